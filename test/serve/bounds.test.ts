/**
 * Every request bounded: hostile slides refused at submission, a running job cancelled within
 * seconds, interrupted jobs retried a bounded number of times, image budgets checked before
 * decoding, slow connections cut off, a connection cap per address, and Fastify's own errors in
 * the one shape. The hostile files are built small on disk.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, utimesSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { ERROR_CODES } from '../../src/errors.js';
import { LIMITS, SHUTDOWN_GRACE_SECONDS } from '../../src/limits.js';
import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { InferenceLimiter } from '../../src/serve/inference-limiter.js';
import { withoutServerPaths } from '../../src/serve/error-handler.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir, repoRoot } from '../helpers.js';
import { fieldsOf, writeDeclaredHugeTiff } from '../slide-fixtures.js';
import { slideScalePackage, trainedPackage } from './model-fixture.js';

interface Job {
  id: string;
  status: string;
  error: { code: string; message: string } | null;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, seconds = 30): Promise<T> {
  const deadline = Date.now() + seconds * 1000;
  for (;;) {
    const value = await fn();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe('bounded work: slides', () => {
  let server: PathotypeServer;
  let root: string;
  let model: Awaited<ReturnType<typeof slideScalePackage>>;

  before(async () => {
    model = await slideScalePackage();
    root = tempDir();
    writeDeclaredHugeTiff(path.join(root, 'huge.tif'), 200_000, 200_000);
    writeDeclaredHugeTiff(path.join(root, 'huge-pyramid.tif'), 200_000, 200_000, { levels: 8 });
    writeDeclaredHugeTiff(path.join(root, 'flat.tif'), 21_000, 21_000);
    writeDeclaredHugeTiff(path.join(root, 'slow.tif'), 20_000, 20_000);
    server = await buildServer({ ...model, slideRoot: root });
  });
  after(() => server.app.close());

  const submit = (file: string) =>
    server.app.inject({ method: 'POST', url: '/api/v1/slides', payload: { path: file } });

  it('refuses a 200,000 px slide at submission, pyramidal or not, and one without a pyramid to mask', async () => {
    for (const file of ['huge.tif', 'huge-pyramid.tif']) {
      const started = performance.now();
      const response = await submit(file);
      assert.equal(response.statusCode, 413, response.body);
      const { code, message } = response.json<{ error: { code: string; message: string } }>().error;
      assert.equal(code, 'ERR_SLIDE_TOO_LARGE');
      assert.match(message, /200000x200000 px: 40\.0 Gpx, above the limit/);
      assert.doesNotMatch(message, new RegExp(root), 'no server path in the message');
      assert.ok(performance.now() - started < 5000, 'refused from the header, at once');
    }
    const flat = await submit('flat.tif');
    assert.equal(flat.statusCode, 413);
    assert.match(flat.json<{ error: { message: string } }>().error.message, /give a pyramidal slide/);
    assert.equal(
      (await server.app.inject('/api/v1/slides')).json<{ total: number }>().total,
      0,
      'no job made',
    );
  });

  it('cancels a running job within 2 s, frees the queue, and says so', async () => {
    const created = await submit('slow.tif');
    assert.equal(created.statusCode, 202, created.body);
    const { id } = created.json<Job>();
    await until('the job to run', async () => {
      const job = (await server.app.inject(`/api/v1/slides/${id}`)).json<Job>();
      return job.status === 'running' ? job : undefined;
    });
    const started = performance.now();
    const cancelled = await server.app.inject({ method: 'DELETE', url: `/api/v1/slides/${id}` });
    assert.equal(cancelled.statusCode, 200, cancelled.body);
    assert.equal(cancelled.json<Job>().status, 'cancelled');
    await server.slidesIdle();
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < 2, `stopped in ${seconds.toFixed(2)} s`);
    assert.equal((await server.app.inject(`/api/v1/slides/${id}`)).json<Job>().status, 'cancelled');
    const again = await server.app.inject({ method: 'DELETE', url: `/api/v1/slides/${id}` });
    assert.equal(again.statusCode, 409, 'nothing left to cancel');
  });

  it('a Deep Zoom tile that would read too much of a slide without levels is refused', async () => {
    const created = await submit('slow.tif');
    const { id } = created.json<Job>();
    await server.app.inject({ method: 'DELETE', url: `/api/v1/slides/${id}` });
    await server.slidesIdle();
    // Level 8 of the 20,000 px slide's Deep Zoom pyramid: one tile covers 16,256 px square.
    const tile = await server.app.inject(`/api/v1/slides/${id}/slide_files/8/0_0.jpeg`);
    assert.equal(tile.statusCode, 413, tile.body);
    assert.equal(tile.json<{ error: { code: string } }>().error.code, 'ERR_TOO_MUCH_WORK');
    assert.equal((await server.app.inject(`/api/v1/slides/${id}/slide_files/15/0_0.jpeg`)).statusCode, 200);
  });

  it('gives up on a job interrupted more often than the retry bound', async () => {
    const dir = tempDir();
    const first = await buildServer({ ...model, dataDir: dir, slideRoot: root });
    const id = '11111111-1111-4111-8111-111111111111';
    await first.store.db.run(
      `INSERT INTO slide_jobs (id, created_at, updated_at, status, file_name, slide_path, uploaded, model_id, attempts, work)
       VALUES (?, ?, ?, 'running', 'slow.tif', ?, 0, 'm@1', ?, 1)`,
      [
        id,
        new Date().toISOString(),
        new Date().toISOString(),
        path.join(root, 'slow.tif'),
        LIMITS.slideAttempts,
      ],
    );
    await first.app.close();
    const second = await buildServer({ ...model, dataDir: dir, slideRoot: root });
    try {
      await second.slidesIdle();
      const job = (await second.app.inject(`/api/v1/slides/${id}`)).json<Job>();
      assert.equal(job.status, 'failed');
      assert.equal(job.error?.code, 'ERR_SLIDE_INTERRUPTED');
    } finally {
      await second.app.close();
    }
  });

  it('bounds the queue per client and in all, with Retry-After', async () => {
    const dir = tempDir();
    const busy = await buildServer({ ...model, dataDir: dir, slideRoot: root });
    try {
      const now = new Date().toISOString();
      for (let i = 0; i < LIMITS.slideJobsQueued; i++)
        await busy.store.db.run(
          `INSERT INTO slide_jobs (id, created_at, updated_at, status, file_name, slide_path, uploaded, model_id, work)
           VALUES (?, ?, ?, 'cancelled', 'x.tif', 'x', 0, 'm@1', 1)`,
          [`job-${i}`, now, now],
        );
      await busy.store.db.run("UPDATE slide_jobs SET status = 'queued'");
      const refused = await busy.app.inject({
        method: 'POST',
        url: '/api/v1/slides',
        payload: { path: 'slow.tif' },
      });
      assert.equal(refused.statusCode, 503);
      assert.equal(refused.json<{ error: { code: string } }>().error.code, 'ERR_BUSY');
      assert.equal(refused.headers['retry-after'], '2');
      await busy.store.db.run("UPDATE slide_jobs SET status = 'cancelled'");
    } finally {
      await busy.app.close();
    }
  });

  it('removes half-written uploads a killed server left, once an hour old', async () => {
    const dir = tempDir();
    const job = path.join(dir, 'slides', 'abandoned');
    mkdirSync(job, { recursive: true });
    writeFileSync(path.join(job, 'slide.tif.part'), 'x');
    const hourAgo = (Date.now() - 3_700_000) / 1000;
    utimesSync(path.join(job, 'slide.tif.part'), hourAgo, hourAgo);
    writeFileSync(path.join(job, 'fresh.tif.part'), 'x');
    const restarted = await buildServer({ ...model, dataDir: dir });
    await restarted.app.close();
    assert.equal(existsSync(path.join(job, 'slide.tif.part')), false);
    assert.equal(
      existsSync(path.join(job, 'fresh.tif.part')),
      true,
      'a fresh one may be an upload in flight',
    );
  });

  it('SIGTERM with a job running ends the process within the grace period', async () => {
    const dir = tempDir();
    const child = spawn(
      process.execPath,
      [
        path.join(repoRoot, 'bin/pathotype.js'),
        '-w',
        dir,
        'serve',
        '--model',
        model.modelDir,
        '--port',
        '0',
        '--slide-root',
        root,
      ],
      { stdio: ['ignore', 'ignore', 'pipe'] },
    );
    let log = '';
    child.stderr.on('data', (chunk: Buffer) => (log += chunk.toString()));
    try {
      const base = await until('the server', () => Promise.resolve(/at (http:\/\/\S+)/.exec(log)?.[1]), 60);
      const created = await fetch(`${base}/api/v1/slides`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ path: 'slow.tif' }),
      });
      const { id } = (await created.json()) as Job;
      await until('the job to run', async () => {
        const job = (await (await fetch(`${base}/api/v1/slides/${id}`)).json()) as Job;
        return job.status === 'running' ? job : undefined;
      });
      const started = performance.now();
      child.kill('SIGTERM');
      const code = await new Promise<number | null>((resolve) => child.once('exit', resolve));
      const seconds = (performance.now() - started) / 1000;
      assert.ok(
        seconds < SHUTDOWN_GRACE_SECONDS + 2,
        `exited after ${seconds.toFixed(1)} s (code ${String(code)})`,
      );
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});

describe('bounded work: images, connections and errors', () => {
  let server: PathotypeServer;
  let address: string;
  let png: Buffer;

  before(async () => {
    const fixture = await trainedPackage();
    png = readFileSync(path.join(fixture.images, 'BLOB/0.png'));
    server = await buildServer({ modelDir: fixture.modelDir, dataDir: tempDir() });
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(() => server.app.close());

  it('refuses an image beyond the pixel budget at the model scale, or the patch budget, before decoding', async () => {
    // 9,000 x 9,000 of one colour: small as a JPEG, 81 Mpx (under the limit) in its file.
    const big = await sharp({ create: { width: 9000, height: 9000, channels: 3, background: '#c08080' } })
      .jpeg()
      .toBuffer();
    const manifest = server.predictor.manifest;
    const started = performance.now();
    const response = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions?filename=big.jpg',
      payload: big,
      headers: { 'content-type': 'image/jpeg' },
    });
    assert.ok(performance.now() - started < 5000, 'refused without decoding 81 Mpx');
    assert.equal(response.statusCode, 413, response.body);
    const code = response.json<{ error: { code: string } }>().error.code;
    // The pattern model tiles at its own scale: the patch budget is what this image breaks.
    assert.equal(
      code,
      manifest.preprocess.targetScale === null ? 'ERR_TOO_MUCH_WORK' : 'ERR_IMAGE_TOO_LARGE',
    );
    assert.equal((await server.store.predictions.list({ limit: 1, offset: 0 })).total, 0);
  });

  it(
    'applies EXIF orientation: a quarter-turned JPEG and its upright twin get the same answer and frame',
    {
      skip: !hasShared(lymphomaDir) && 'needs ../shared',
    },
    async () => {
      // A corner of a real field (the pattern images' black ground would be refused as black ink).
      const field = fieldsOf('CLL', 1)[0] ?? '';
      const upright = await sharp(field)
        .extract({ left: 0, top: 0, width: 160, height: 96 })
        .jpeg({ quality: 98 })
        .toBuffer();
      // The same pixels stored turned a quarter back, with orientation 6 to turn them upright again.
      const turned = await sharp(await sharp(upright).rotate(270).toBuffer())
        .withMetadata({ orientation: 6 })
        .jpeg({ quality: 98 })
        .toBuffer();
      assert.equal((await sharp(turned).metadata()).width, 96, 'stored turned');
      const answer = async (body: Buffer) => {
        const response = await server.app.inject({
          method: 'POST',
          url: '/api/v1/predictions',
          payload: body,
          headers: { 'content-type': 'image/jpeg' },
        });
        assert.equal(response.statusCode, 201, response.body);
        return response.json<{
          width: number;
          height: number;
          predicted: string;
          voteShares: Record<string, number>;
          grid: { width: number; height: number; cols: number; rows: number };
        }>();
      };
      const a = await answer(upright);
      const b = await answer(turned);
      assert.deepEqual([b.width, b.height], [160, 96], 'the record keeps the upright size');
      assert.deepEqual(
        [b.grid.width, b.grid.height, b.grid.cols, b.grid.rows],
        [a.grid.width, a.grid.height, a.grid.cols, a.grid.rows],
      );
      assert.equal(b.predicted, a.predicted);
      for (const [c, share] of Object.entries(a.voteShares))
        assert.ok(Math.abs(share - (b.voteShares[c] ?? 0)) < 0.15, c);
    },
  );

  it('a request whose client went away leaves the inference queue and never takes the engine', async () => {
    const limiter = new InferenceLimiter(1, 4);
    let release = (): void => undefined;
    const occupied = limiter.run(() => new Promise<void>((resolve) => (release = resolve)));
    const gone = new AbortController();
    let ran = false;
    const waiting = limiter.run(async () => {
      ran = true;
      return Promise.resolve();
    }, gone.signal);
    assert.equal(limiter.waiting, 1);
    gone.abort();
    await assert.rejects(waiting, { code: 'ERR_ABORTED' });
    assert.equal(limiter.waiting, 0);
    release();
    await occupied;
    assert.equal(ran, false);
  });

  it('Fastify and Node errors come in the one shape, with catalogued codes', async () => {
    const noBoundary = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions',
      payload: 'xx',
      headers: { 'content-type': 'multipart/form-data' },
    });
    assert.equal(noBoundary.statusCode, 400, noBoundary.body);
    assert.equal(noBoundary.json<{ error: { code: string } }>().error.code, 'ERR_REQUEST');
    const wrongType = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions',
      payload: 'x',
      headers: { 'content-type': 'application/xml' },
    });
    assert.equal(wrongType.statusCode, 415);
    assert.equal(wrongType.json<{ error: { code: string } }>().error.code, 'ERR_UNSUPPORTED_MEDIA');
    const longName = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions',
      payload: png,
      headers: { 'content-type': 'image/png', 'x-file-name': 'a'.repeat(5000) },
    });
    assert.equal(longName.statusCode, 400);
    // A 60 KB header: Node's parser refuses it, in our shape.
    const huge = await fetch(`${address}/healthz`, { headers: { 'x-big': 'a'.repeat(60_000) } });
    assert.equal(huge.status, 431);
    const body = (await huge.json()) as { error: { code: string } };
    assert.equal(body.error.code, 'ERR_HEADERS_TOO_LARGE');
    for (const code of ['ERR_REQUEST', 'ERR_UNSUPPORTED_MEDIA', 'ERR_HEADERS_TOO_LARGE'])
      assert.ok(code in ERROR_CODES);
    assert.equal(withoutServerPaths('cannot read /srv/slides/case1/x.tif: bad'), 'cannot read x.tif: bad');
  });

  it('closes connections that trickle their headers, caps connections per address, and keeps answering', async () => {
    const { port } = new URL(address);
    const open = (localAddress: string): Promise<net.Socket> =>
      new Promise((resolve, reject) => {
        const socket = net.connect({ host: '127.0.0.1', port: Number(port), localAddress }, () =>
          resolve(socket),
        );
        socket.on('error', reject);
      });
    // From another loopback address, as many as the cap allows and more.
    const sockets: net.Socket[] = [];
    let closed = 0;
    for (let i = 0; i < LIMITS.connectionsPerAddress + 8; i++) {
      const socket = await open('127.0.0.2');
      socket.on('close', () => closed++);
      socket.on('error', () => undefined);
      // Read what the server sends (its 408), so its close reaches us.
      socket.resume();
      socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
      sockets.push(socket);
    }
    await until(
      'the connections over the cap to close',
      () => Promise.resolve(closed >= 8 ? true : undefined),
      5,
    );
    assert.ok(closed >= 8 && closed < LIMITS.connectionsPerAddress, `${closed} closed at once`);
    // Meanwhile another client is served.
    assert.equal((await fetch(`${address}/healthz`)).status, 200);
    // The trickling ones are cut off after the header timeout.
    const started = performance.now();
    await until(
      'the slow connections to close',
      () => Promise.resolve(closed === sockets.length ? true : undefined),
      (LIMITS.headersTimeoutMs + 5000) / 1000,
    );
    const seconds = (performance.now() - started) / 1000;
    assert.ok(seconds < LIMITS.headersTimeoutMs / 1000 + 3, `closed after ${seconds.toFixed(1)} s`);
    assert.equal((await fetch(`${address}/healthz`)).status, 200);
  });
});
