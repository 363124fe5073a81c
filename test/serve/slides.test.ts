import assert from 'node:assert/strict';
import { readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { check } from '@placemarkio/check-geojson';
import sharp from 'sharp';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { fieldsOf, writeTestSlide, type TestSlide } from '../slide-fixtures.js';
import { slideScalePackage } from './model-fixture.js';
import { renamed } from './review-loop-fixtures.js';

function multipart(
  field: string,
  fileName: string,
  content: Buffer,
): { body: Buffer; headers: Record<string, string> } {
  const boundary = '----pathotype-slide-boundary';
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${fileName}"\r\nContent-Type: image/tiff\r\n\r\n`,
    ),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

interface Job {
  id: string;
  status: string;
  progress: { done: number; total: number };
  result: { predicted: string } | null;
  error: { code: string } | null;
  links: Record<string, string>;
  model: string;
}

async function waitFor(server: PathotypeServer, id: string): Promise<Job> {
  for (;;) {
    const job = (await server.app.inject(`/api/v1/slides/${id}`)).json<Job>();
    if (job.status === 'done' || job.status === 'failed') return job;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('slides over REST', { skip: !hasShared(lymphomaDir) && 'needs ../shared' }, () => {
  let server: PathotypeServer;
  let slide: TestSlide;
  let root: string;
  let model: { modelDir: string; dataDir: string };

  before(async () => {
    model = await slideScalePackage();
    root = tempDir();
    slide = await writeTestSlide(path.join(root, 'mosaic.tif'), [...fieldsOf('FL', 3), null], { across: 2 });
    server = await buildServer({ ...model, slideRoot: root });
  });
  after(() => server.app.close());

  it('takes an upload, answers 202 with a job, and serves its GeoJSON, overlay and Deep Zoom tiles', async () => {
    const form = multipart('slide', 'mosaic.tif', readFileSync(slide.file));
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: form.body,
      headers: form.headers,
    });
    assert.equal(created.statusCode, 202, created.body);
    const job = created.json<Job>();
    assert.equal(created.headers.location, `/api/v1/slides/${job.id}`);
    assert.ok(['queued', 'running'].includes(job.status));
    const done = await waitFor(server, job.id);
    assert.equal(done.status, 'done', JSON.stringify(done.error));
    assert.ok(done.result && ['BLOB', 'CHECKER', 'STRIPES'].includes(done.result.predicted));
    assert.equal(done.progress.done, done.progress.total);

    const geojson = await server.app.inject(done.links.geojson ?? '');
    assert.equal(geojson.statusCode, 200);
    assert.match(String(geojson.headers['content-type']), /geo\+json/);
    check(geojson.body);
    assert.equal(geojson.json<{ features: unknown[] }>().features.length, done.progress.total);

    const overlay = await server.app.inject(done.links.heatmap ?? '');
    const meta = await sharp(overlay.rawPayload).metadata();
    assert.deepEqual([meta.width, meta.height, meta.channels], [slide.width, slide.height, 4]);

    const dzi = await server.app.inject(done.links.slideDzi ?? '');
    assert.match(dzi.body, new RegExp(`Width="${slide.width}" Height="${slide.height}"`));
    const levels = Math.ceil(Math.log2(Math.max(slide.width, slide.height))) + 1;
    const top = await server.app.inject(`/api/v1/slides/${job.id}/slide_files/${levels - 1}/1_0.jpeg`);
    assert.equal(top.statusCode, 200);
    const tile = await sharp(top.rawPayload).metadata();
    // 254 px with a 1 px overlap on each inner side: the first row has none above.
    assert.deepEqual([tile.format, tile.width, tile.height], ['jpeg', 256, 255]);
    const heatDzi = await server.app.inject(done.links.heatmapDzi ?? '');
    assert.match(heatDzi.body, /Format="png"/);
    const missing = await server.app.inject(`/api/v1/slides/${job.id}/slide_files/${levels - 1}/99_99.jpeg`);
    assert.equal(missing.statusCode, 404);
  });

  it('takes a path under the slide root, and refuses paths outside it and files that are not slides', async () => {
    const byPath = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'mosaic.tif' },
    });
    assert.equal(byPath.statusCode, 202, byPath.body);
    assert.equal((await waitFor(server, byPath.json<Job>().id)).status, 'done');
    const escape = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: '../../etc/passwd' },
    });
    assert.equal(escape.statusCode, 404);
    symlinkSync('/etc', path.join(root, 'link'));
    const viaLink = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'link/passwd' },
    });
    assert.equal(viaLink.statusCode, 404);
    writeFileSync(path.join(root, 'notes.svs'), 'not a slide');
    const notSlide = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'notes.svs' },
    });
    assert.equal(notSlide.statusCode, 415);
    assert.equal(notSlide.json<{ error: { code: string } }>().error.code, 'ERR_SLIDE_UNSUPPORTED');
    const form = multipart('slide', 'notes.svs', Buffer.from('not a slide at all'));
    const badUpload = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: form.body,
      headers: form.headers,
    });
    assert.equal(badUpload.statusCode, 415);
    const empty = await server.app.inject({ method: 'POST', url: '/api/v1/slides', payload: {} });
    assert.equal(empty.statusCode, 400);
    const unknown = await server.app.inject('/api/v1/slides/00000000-0000-0000-0000-000000000000');
    assert.equal(unknown.statusCode, 404);
  });

  it('sends a slide to the model named in ?model=, whose page names it and shows its reviews, offers the names on the slides page, and refuses a name it does not hold', async () => {
    const two = await buildServer({
      modelDir: model.modelDir,
      moreModelDirs: [renamed(model.modelDir, 'second-opinion')],
      dataDir: tempDir(),
      slideRoot: root,
    });
    try {
      const sent = await two.app.inject({
        method: 'POST',
        url: '/api/v1/slides?model=second-opinion',
        payload: { path: 'mosaic.tif' },
      });
      assert.equal(sent.statusCode, 202, sent.body);
      const job = await waitFor(two, sent.json<Job>().id);
      assert.deepEqual([job.status, job.model], ['done', 'second-opinion@1']);
      // Its page names the version that answered, and shows the reviews recorded on it.
      const viewer = async (): Promise<string> =>
        (await two.app.inject({ url: `/slides/${job.id}`, headers: { accept: 'text/html' } })).body;
      assert.match(await viewer(), /id="answered-by" data-model="second-opinion@1">Model: second-opinion v1/);
      assert.match(await viewer(), /id="review-status-line" data-status="unreviewed"/);
      const review = await two.app.inject({
        method: 'POST',
        url: `/api/v1/slides/${job.id}/review`,
        payload: { label: 'STRIPES', patient: 'p-7', comment: 'stripes' },
      });
      assert.equal(review.statusCode, 201, review.body);
      assert.match(
        await viewer(),
        /<li data-reviewer="[^"]*"><strong>STRIPES<\/strong> by .*patient p-7: stripes<\/li>/,
      );
      const unknown = await two.app.inject({
        method: 'POST',
        url: '/api/v1/slides?model=nobody',
        payload: { path: 'mosaic.tif' },
      });
      assert.equal(unknown.statusCode, 404);
      assert.equal(unknown.json<{ error: { code: string } }>().error.code, 'ERR_NOT_FOUND');
      const page = await two.app.inject({ url: '/slides', headers: { accept: 'text/html' } });
      assert.match(
        page.body,
        /<select id="model"><option value="[^"]+">[^<]*<\/option><option value="second-opinion">/,
      );
    } finally {
      await two.app.close();
    }
  });

  it('keeps a job across a restart: one stopped midway runs again when the server starts', async () => {
    const dataDir = path.join(tempDir(), 'restart');
    const first = await buildServer({ ...model, dataDir, slideRoot: root });
    const created = await first.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'mosaic.tif' },
    });
    const id = created.json<Job>().id;
    await first.app.close();
    const second = await buildServer({ ...model, dataDir, slideRoot: root });
    try {
      const job = await waitFor(second, id);
      assert.equal(job.status, 'done');
      const geojson = await second.app.inject(`/api/v1/slides/${id}/geojson`);
      assert.equal(geojson.statusCode, 200);
    } finally {
      await second.app.close();
    }
  });
});
