/**
 * Pathologist in the loop: reviews recorded through the API (sessions with CSRF, as uploads),
 * listed, audited, append-only with a reader's later review superseding, exported as a labelled
 * image set that `data import` groups by patient; a viewer may not review.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { workspaceAt } from '../../src/workspace.js';
import { runCli } from '../helpers.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';
import { ORIGIN, PASSWORD, signIn as login, type SignedIn as Browser } from './review-loop-fixtures.js';

describe('reviews', () => {
  let server: PathotypeServer;
  let images: string;
  let workspace: string;
  let paula: Browser;
  let rita: Browser;
  let victor: Browser;

  before(async () => {
    const fixture = await trainedPackage();
    images = fixture.images;
    workspace = tempDir();
    server = await buildServer({ modelDir: fixture.modelDir, dataDir: workspaceAt(workspace).serveDir });
    await server.store.users.add('paula', 'pathologist', PASSWORD);
    await server.store.users.add('rita', 'pathologist', PASSWORD);
    await server.store.users.add('victor', 'viewer', PASSWORD);
    paula = await login(server, 'paula');
    rita = await login(server, 'rita');
    victor = await login(server, 'victor');
  });
  after(() => server.app.close());

  const upload = async (file: string): Promise<string> => {
    const response = await server.app.inject({
      method: 'POST',
      url: `/portal/predictions?filename=${path.basename(file)}`,
      payload: readFileSync(file),
      headers: {
        'content-type': 'image/png',
        cookie: paula.cookie,
        origin: ORIGIN,
        'x-csrf-token': paula.csrf,
      },
    });
    assert.equal(response.statusCode, 201, response.body);
    return response.json<{ id: string }>().id;
  };

  /** The n-th image of a class folder of the pattern set. */
  const imageOf = (className: string, n: number): string =>
    path.join(images, className, readdirSync(path.join(images, className)).sort()[n] ?? '');

  const review = (who: Browser, id: string, body: object, headers: Record<string, string> = {}) =>
    server.app.inject({
      method: 'POST',
      url: `/api/v1/predictions/${id}/review`,
      payload: body,
      headers: { cookie: who.cookie, origin: ORIGIN, 'x-csrf-token': who.csrf, ...headers },
    });

  it('records three reviews, lists and audits them, exports them, and data import groups them by patient', async () => {
    const cases = [
      { file: imageOf('BLOB', 0), label: 'BLOB', patient: 'sj-05-1001' },
      { file: imageOf('CHECKER', 0), label: 'CHECKER', patient: 'sj-05-1002' },
      { file: imageOf('STRIPES', 0), label: 'STRIPES', patient: 'sj-05-1003' },
    ];
    const ids: string[] = [];
    for (const c of cases) {
      const id = await upload(c.file);
      ids.push(id);
      const response = await review(paula, id, { label: c.label, patient: c.patient, comment: 'typical' });
      assert.equal(response.statusCode, 201, response.body);
      const body = response.json<{ reviewer: string; caseId: string; label: string; modelId: string }>();
      assert.equal(body.reviewer, 'paula');
      assert.equal(body.caseId, id);
      assert.equal(body.modelId, 'served@1');
    }
    const listed = await server.app.inject({ url: '/api/v1/reviews', headers: { cookie: paula.cookie } });
    assert.equal(listed.statusCode, 200);
    const reviews = listed.json<{ reviews: { caseId: string; label: string; patient: string }[] }>().reviews;
    assert.equal(reviews.length, 3);
    assert.deepEqual(new Set(reviews.map((r) => r.caseId)), new Set(ids));
    const csv = await server.app.inject({
      url: '/api/v1/reviews.csv?label=CHECKER',
      headers: { cookie: paula.cookie },
    });
    assert.match(csv.headers['content-type'] as string, /^text\/csv/);
    assert.equal(csv.body.trim().split('\n').length, 2, csv.body);
    assert.match(csv.body, /sj-05-1002/);
    const audit = await server.store.audit.list({ actor: 'paula' });
    for (const id of ids)
      assert.ok(
        audit.some((e) => e.action === 'review.create.prediction' && e.caseId === id && e.status === 201),
        `the audit names the review of ${id}`,
      );

    const out = path.join(tempDir(), 'reviewed');
    const exported = await runCli(['-w', workspace, 'reviews', 'export', '--out', out]);
    assert.equal(exported.code, 0, exported.stderr);
    assert.match(exported.stdout, /3 exported/);
    for (const c of cases) {
      const files = readdirSync(path.join(out, c.label));
      assert.equal(files.length, 1);
      assert.match(files[0] ?? '', new RegExp(`^${c.patient}_[0-9a-f]{8}\\.png$`));
    }
    const manifest = readFileSync(path.join(out, 'manifest.csv'), 'utf8').trim().split('\n');
    assert.equal(manifest[0], 'image,patient,label,readers,agreement,status,case');
    assert.equal(manifest.length, 4);

    const fresh = tempDir();
    const imported = await runCli(['-w', fresh, 'data', 'import', out, '--json']);
    assert.equal(imported.code, 0, imported.stderr);
    const report = JSON.parse(imported.stdout) as {
      added: number;
      cases: number;
      perClass: Record<string, number>;
    };
    assert.equal(report.added, 3);
    assert.equal(report.cases, 3, 'three patients');
    assert.deepEqual(report.perClass, { BLOB: 1, CHECKER: 1, STRIPES: 1 });
  });

  it("refuses a viewer's review, a request without the CSRF token, and a label the model does not know", async () => {
    const id = await upload(imageOf('BLOB', 1));
    const viewer = await review(victor, id, { label: 'BLOB' });
    assert.equal(viewer.statusCode, 403);
    assert.equal(viewer.json<{ error: { code: string } }>().error.code, 'ERR_FORBIDDEN');
    const noToken = await review(paula, id, { label: 'BLOB' }, { 'x-csrf-token': 'forged' });
    assert.equal(noToken.statusCode, 403);
    const unknown = await review(paula, id, { label: 'DLBCL' });
    assert.equal(unknown.statusCode, 400);
    assert.equal(unknown.json<{ error: { code: string } }>().error.code, 'ERR_VALIDATION');
    const other = await review(paula, id, { label: 'other' });
    assert.equal(other.statusCode, 400, "'other' needs its text");
    assert.equal((await review(paula, id, { label: 'other', other: 'reactive node' })).statusCode, 201);
    const missing = await review(paula, '00000000-0000-4000-8000-000000000000', { label: 'BLOB' });
    assert.equal(missing.statusCode, 404);
  });

  it("keeps a reader's history, shows each reader's latest, and leaves disagreements out of the export", async () => {
    const id = await upload(imageOf('CHECKER', 1));
    const first = (await review(paula, id, { label: 'BLOB', patient: 'sj-05-2001' })).json<{ id: string }>();
    const second = (await review(paula, id, { label: 'CHECKER' })).json<{ id: string; supersedes: string }>();
    assert.equal(second.supersedes, first.id);
    assert.equal((await review(rita, id, { label: 'STRIPES' })).statusCode, 201);
    const current = await server.store.reviews.list({ caseId: id });
    assert.deepEqual(current.map((r) => `${r.reviewer}:${r.label}`).sort(), [
      'paula:CHECKER',
      'rita:STRIPES',
    ]);
    assert.equal((await server.store.reviews.list({ caseId: id, history: true })).length, 3);
    await assert.rejects(server.store.db.run('DELETE FROM reviews'), /append-only/);

    const out = path.join(tempDir(), 'reviewed');
    const exported = await runCli(['-w', workspace, 'reviews', 'export', '--out', out]);
    assert.equal(exported.code, 0, exported.stderr);
    const manifest = readFileSync(path.join(out, 'manifest.csv'), 'utf8');
    assert.match(manifest, new RegExp(`,sj-05-2001,CHECKER,paula;rita,disagree,disagreement,${id}`));
    const withThem = await runCli([
      '-w',
      workspace,
      'reviews',
      'export',
      '--out',
      out,
      '--include-disagreements',
    ]);
    assert.match(withThem.stdout, /4 exported/);
  });

  it("puts the review form on a pathologist's result page, not on a viewer's", async () => {
    const id = await upload(imageOf('STRIPES', 1));
    const page = await server.app.inject({ url: `/cases/${id}`, headers: { cookie: paula.cookie } });
    assert.equal(page.statusCode, 200);
    assert.match(page.body, new RegExp(`id="review-form" data-action="/api/v1/predictions/${id}/review"`));
    assert.match(page.body, /<option value="other">/);
    assert.match(page.body, /src="\/static\/portal\/review.js"/);
    const script = await server.app.inject({ url: '/static/portal/review.js' });
    assert.equal(script.statusCode, 200);
    const viewerPage = await server.app.inject({ url: `/cases/${id}`, headers: { cookie: victor.cookie } });
    assert.equal(viewerPage.statusCode, 200);
    assert.doesNotMatch(viewerPage.body, /review-form/);
  });
});
