/**
 * The review loop through the API and the pages: double reading (an admin's setting; the second
 * reader does not see the first's review in the list, on the page or in the queue until theirs
 * is in; a disagreement goes to a third reader), the review queue's order and filters, the
 * agreement report, champion and challenger (compared on reviewed cases before an admin may
 * promote; the next result names the new version; a rollback is the same action), drift, and
 * who may do each (viewers review nothing, only admins promote and see agreement and drift).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { PathotypeServer } from '../../src/serve/app.js';
import { championAndChallenger, sent, signIn, type SignedIn } from './review-loop-fixtures.js';

interface QueueBody {
  total: number;
  items: { caseId: string; status: string; margin: number | null; unlike: boolean; modelId: string }[];
}

describe('the review loop', () => {
  let server: PathotypeServer;
  let images: string;
  const who: Record<string, SignedIn> = {};
  const cases: string[] = [];

  before(async () => {
    ({ server, images } = await championAndChallenger([
      ['ada', 'admin'],
      ['paula', 'pathologist'],
      ['rita', 'pathologist'],
      ['tom', 'pathologist'],
      ['victor', 'viewer'],
    ]));
    for (const name of ['ada', 'paula', 'rita', 'tom', 'victor']) who[name] = await signIn(server, name);
  });
  after(() => server.app.close());

  const as = (name: string): SignedIn => who[name] as SignedIn;
  const imageOf = (className: string, n: number): string =>
    path.join(images, className, readdirSync(path.join(images, className)).sort()[n] ?? '');
  const upload = async (
    file: string,
  ): Promise<{ id: string; model: { id: string }; atypicality: { known: boolean; says: string } }> => {
    const response = await server.app.inject({
      method: 'POST',
      url: `/portal/predictions?filename=${path.basename(file)}`,
      payload: readFileSync(file),
      headers: { 'content-type': 'image/png', ...sent(as('paula')) },
    });
    assert.equal(response.statusCode, 201, response.body);
    const { id } = response.json<{ id: string }>();
    const api = await server.app.inject({
      url: `/api/v1/predictions/${id}`,
      headers: { cookie: as('paula').cookie },
    });
    return api.json();
  };
  const review = (name: string, id: string, label: string, patient?: string) =>
    server.app.inject({
      method: 'POST',
      url: `/api/v1/predictions/${id}/review`,
      payload: { label, ...(patient ? { patient } : {}) },
      headers: sent(as(name)),
    });
  const get = (name: string, url: string) => server.app.inject({ url, headers: { cookie: as(name).cookie } });

  it('answers with the active version, names it, and says how typical the input is', async () => {
    const models = (await get('victor', '/api/v1/models')).json<
      { id: string; active: boolean; reference: unknown }[]
    >();
    assert.deepEqual(
      models.map((m) => `${m.id}:${m.active}`),
      ['served@2:false', 'served@1:true'],
    );
    assert.ok(
      models.every((m) => m.reference !== null),
      'both keep a reference of their training images',
    );
    for (const [c, n] of [
      ['BLOB', 0],
      ['CHECKER', 0],
      ['STRIPES', 0],
      ['BLOB', 1],
    ] as const) {
      const prediction = await upload(imageOf(c, n));
      assert.equal(prediction.model.id, 'served@1');
      assert.equal(prediction.atypicality.known, true);
      assert.match(prediction.atypicality.says, /training data/);
      cases.push(prediction.id);
    }
  });

  it("double reading: an admin's setting, the second reader blind to the first until theirs is in", async () => {
    const [a = ''] = cases;
    const setting = (name: string, readers: number, headers = sent(as(name))) =>
      server.app.inject({ method: 'PUT', url: '/api/v1/reviews/settings', payload: { readers }, headers });
    assert.equal((await setting('paula', 2)).statusCode, 403, 'a pathologist may not change it');
    assert.equal(
      (await setting('ada', 2, { cookie: as('ada').cookie })).statusCode,
      403,
      'CSRF as for uploads',
    );
    assert.equal((await setting('ada', 2)).statusCode, 200);
    assert.deepEqual((await get('victor', '/api/v1/reviews/settings')).json(), { readers: 2 });

    assert.equal((await review('paula', a, 'BLOB', 'sj-05-3001')).statusCode, 201);
    const ritaList = (await get('rita', `/api/v1/reviews?case=${a}`)).json<{ reviews: unknown[] }>();
    assert.deepEqual(ritaList.reviews, [], "rita's list holds nothing of paula's review");
    const ritaCsv = await get('rita', '/api/v1/reviews.csv');
    assert.doesNotMatch(ritaCsv.body, /paula/);
    const page = await get('rita', `/cases/${a}`);
    const section = /<section class="panel" id="reviews"[\s\S]*?<\/section>/.exec(page.body)?.[0] ?? '';
    assert.match(section, /hidden until you record yours/);
    assert.doesNotMatch(section, /paula|sj-05-3001/);
    const ritaQueue = (await get('rita', '/api/v1/reviews/queue')).json<QueueBody>();
    assert.equal(ritaQueue.items.find((i) => i.caseId === a)?.status, 'second-reading');
    const paulaQueue = (await get('paula', '/api/v1/reviews/queue')).json<QueueBody>();
    assert.ok(!paulaQueue.items.some((i) => i.caseId === a), 'a reader never sees a case they reviewed');
    assert.equal(
      (await get('ada', `/api/v1/reviews?case=${a}`)).json<{ reviews: unknown[] }>().reviews.length,
      1,
    );

    assert.equal((await review('rita', a, 'CHECKER')).statusCode, 201);
    const both = (await get('rita', `/api/v1/reviews?case=${a}`)).json<{ reviews: { reviewer: string }[] }>();
    assert.deepEqual(both.reviews.map((r) => r.reviewer).sort(), ['paula', 'rita']);
    const tomQueue = (await get('tom', '/api/v1/reviews/queue?status=disagreement')).json<QueueBody>();
    assert.deepEqual(
      tomQueue.items.map((i) => i.caseId),
      [a],
      'the disagreement is listed for a third reader',
    );
    const agreement = await get('ada', '/admin/agreement');
    assert.match(agreement.body, new RegExp(`id="disagreements"[\\s\\S]*${a.slice(0, 8)}`));
    assert.equal((await review('tom', a, 'BLOB')).statusCode, 201);
    const settled = await get('paula', `/cases/${a}`);
    assert.match(settled.body, /id="consensus">BLOB</);
  });

  it('lists the queue most informative first, filtered by model, date and status; viewers have none', async () => {
    const queue = (await get('tom', '/api/v1/reviews/queue')).json<QueueBody>();
    assert.equal(queue.total, 3, 'every case but the settled one');
    const margins = queue.items.filter((i) => !i.unlike).map((i) => i.margin ?? 1);
    assert.deepEqual(
      margins,
      [...margins].sort((x, y) => x - y),
      'smallest calibrated margin first',
    );
    const none = (await get('tom', '/api/v1/reviews/queue?model=other')).json<QueueBody>();
    assert.equal(none.total, 0);
    const byVersion = (
      await get('tom', '/api/v1/reviews/queue?model=served@1&status=unreviewed')
    ).json<QueueBody>();
    assert.equal(byVersion.total, 3);
    const future = (await get('tom', '/api/v1/reviews/queue?since=2999-01-01')).json<QueueBody>();
    assert.equal(future.total, 0);
    assert.equal((await get('victor', '/api/v1/reviews/queue')).statusCode, 403);
    const page = await get('tom', '/reviews');
    assert.equal(page.statusCode, 200);
    assert.match(page.body, /<table id="queue">/);
    assert.equal((await get('victor', '/reviews')).statusCode, 403);
  });

  it('reports kappa between readers and with the model, to admins only', async () => {
    const [, b = '', c = ''] = cases;
    await review('paula', b, 'CHECKER', 'sj-05-3002');
    await review('rita', b, 'CHECKER');
    await review('paula', c, 'STRIPES', 'sj-05-3003');
    await review('rita', c, 'STRIPES');
    const report = (await get('ada', '/api/v1/reviews/agreement')).json<{
      readers: {
        pairs: number;
        kappa: { estimate: number; low: number; high: number };
        confusion: number[][];
      };
      model: { pairs: number };
    }>();
    assert.equal(report.readers.pairs, 3);
    assert.ok(
      report.readers.kappa.low <= report.readers.kappa.estimate &&
        report.readers.kappa.estimate <= report.readers.kappa.high,
    );
    assert.equal(report.model.pairs, 7, 'every current review against the model that answered');
    assert.equal((await get('paula', '/api/v1/reviews/agreement')).statusCode, 403);
    assert.equal((await get('paula', '/admin/agreement')).statusCode, 403);
  });

  it('promotes a challenger only after its comparison on reviewed cases; the next result names it; rollback is the same action', async () => {
    const promote = (name: string, version: number, headers = sent(as(name))) =>
      server.app.inject({
        method: 'POST',
        url: '/api/v1/models/served/promote',
        payload: { version },
        headers,
      });
    const compare = (name: string, version: number) =>
      server.app.inject({
        method: 'POST',
        url: '/api/v1/models/served/compare',
        payload: { version },
        headers: sent(as(name)),
      });
    assert.equal((await promote('paula', 2)).statusCode, 403, 'pathologists do not promote');
    const early = await promote('ada', 2);
    assert.equal(early.statusCode, 409);
    assert.equal(early.json<{ error: { code: string } }>().error.code, 'ERR_NOT_COMPARED');
    assert.equal((await compare('paula', 2)).statusCode, 403);
    const compared = await compare('ada', 2);
    assert.equal(compared.statusCode, 201, compared.body);
    const result = compared.json<{
      champion: string;
      challenger: string;
      result: { cases: number; excluded: { trainedOn: number; unsettled: number } };
    }>();
    assert.equal(result.champion, 'served@1');
    assert.equal(result.challenger, 'served@2');
    const { cases: n, excluded } = result.result;
    assert.equal(n + excluded.trainedOn, 3, 'the three settled cases, less those a package trained on');
    assert.equal(excluded.unsettled, 0);
    assert.equal((await promote('ada', 2, { cookie: as('ada').cookie })).statusCode, 403, 'CSRF');
    const promoted = await promote('ada', 2);
    assert.equal(promoted.statusCode, 200, promoted.body);
    assert.equal(promoted.json<{ modelId: string; previous: string }>().previous, 'served@1');
    const next = await upload(imageOf('STRIPES', 1));
    assert.equal(next.model.id, 'served@2', 'the next result names the promoted version');
    const page = await get('paula', `/cases/${next.id}`);
    assert.match(page.body, /id="answered-by" data-model="served@2">served v2/);
    const rollback = await promote('ada', 1);
    assert.equal(rollback.statusCode, 200, 'back to a version that was active needs no comparison');
    assert.equal((await upload(imageOf('CHECKER', 1))).model.id, 'served@1');
    const history = (await get('victor', '/api/v1/models/served/promotions')).json<
      { modelId: string; actor: string }[]
    >();
    assert.deepEqual(
      history.map((p) => `${p.modelId} by ${p.actor}`),
      ['served@1 by ada', 'served@2 by ada', 'served@1 by serve'],
    );
    const audit = await server.store.audit.list({ actor: 'ada' });
    assert.equal(audit.filter((e) => e.action === 'model.promote' && e.status === 200).length, 2);
    assert.ok(audit.some((e) => e.action === 'model.compare' && e.status === 201));
    const models = await get('ada', '/admin/models');
    assert.match(models.body, /Roll back to v2|Compare with the active version/);
    assert.equal((await get('paula', '/admin/models')).statusCode, 403);
  });

  it("shows drift to admins: the week's share unlike the training data and the inputs against the training images'", async () => {
    const drift = (await get('ada', '/api/v1/drift?model=served@1')).json<{
      weeks: { cases: number; unlike: number; unknown: number; measures: { focus: { median: number } } }[];
      training: { images: number } | null;
    }>();
    assert.ok(drift.training && drift.training.images > 0);
    assert.equal(
      drift.weeks.reduce((n, w) => n + w.cases, 0),
      5,
    );
    assert.ok((drift.weeks[0]?.measures.focus.median ?? 0) > 0);
    assert.equal((await get('paula', '/api/v1/drift')).statusCode, 403);
    const page = await get('ada', '/admin/drift?model=served@1');
    assert.match(page.body, /<table id="drift">/);
    assert.equal((await get('victor', '/admin/drift')).statusCode, 403);
  });
});
