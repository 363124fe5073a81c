/**
 * The review loop's records (migration 9) behave the same on SQLite and PostgreSQL: promotions
 * append-only with the newest one active, comparisons and case answers kept, case signals
 * filtered by model and time, the reading rule stored once for the deployment.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import { openStore, type ServerStore } from '../../src/store/open.js';
import { casesRead, requiredReaders, setRequiredReaders } from '../../src/store/review-cases.js';
import { tempDir } from '../fixtures.js';
import { startPostgres, type TestPostgres } from '../postgres.js';

async function exercise(store: ServerStore): Promise<void> {
  const models = store.models;
  await models.promote({ name: 'm', modelId: 'm@1', previous: null, actor: 'serve', comparisonId: null });
  await models.promote({
    name: 'other',
    modelId: 'other@3',
    previous: null,
    actor: 'serve',
    comparisonId: null,
  });
  const comparison = await models.addComparison({
    name: 'm',
    champion: 'm@1',
    challenger: 'm@2',
    actor: 'ada',
    result: { cases: 3, difference: { estimate: 0.1, low: -0.2, high: 0.4 } },
  });
  await models.promote({
    name: 'm',
    modelId: 'm@2',
    previous: 'm@1',
    actor: 'ada',
    comparisonId: comparison.id,
  });
  const active = await models.active();
  assert.equal(active.get('m')?.modelId, 'm@2');
  assert.equal(active.get('other')?.modelId, 'other@3');
  assert.deepEqual(
    (await models.history('m')).map((p) => p.modelId),
    ['m@2', 'm@1'],
  );
  await assert.rejects(store.db.run("UPDATE model_promotions SET model_id = 'm@9'"), /append-only/);
  await assert.rejects(store.db.run('DELETE FROM model_promotions'), /append-only/);
  const [kept] = await models.comparisons<{ cases: number }>('m', 'm@2');
  assert.equal(kept?.result.cases, 3);
  assert.deepEqual(await models.comparisons('m', 'm@5'), []);

  await models.saveAnswer('prediction', 'c1', 'm@2', {
    predicted: 'FL',
    status: 'answered',
    confidence: 0.9,
  });
  await models.saveAnswer('prediction', 'c1', 'm@2', { refused: 'ERR_BLURRED' });
  assert.deepEqual(await models.answer('prediction', 'c1', 'm@2'), {
    predicted: 'FL',
    status: 'answered',
    confidence: 0.9,
  });
  assert.equal(await models.answer('prediction', 'c1', 'm@1'), undefined);

  const inputs = { scale: 0.3, focus: 0.1, haematoxylin: 0.5, eosin: 0.05 };
  for (const [id, at, modelId, atypicality] of [
    ['a', '2026-01-01T00:00:00.000Z', 'm@1', 20],
    ['b', '2026-01-08T00:00:00.000Z', 'm@2', 99.5],
    ['c', '2026-01-09T00:00:00.000Z', 'mx@1', null],
  ] as const) {
    await store.db.run(
      `INSERT INTO predictions (id, created_at, file_name, sha256, bytes, width, height, model_id, model_version, result, timings, client, image_file)
       VALUES (?, ?, ?, 'x', 1, 1, 1, ?, 1, '{}', '{}', '{}', NULL)`,
      [id, at, `${id}.png`, modelId],
    );
    await store.signals.add({
      caseKind: 'prediction',
      caseId: id,
      createdAt: at,
      modelId,
      margin: 0.2,
      atypicality,
      inputs,
    });
  }
  const all = await store.signals.candidates({ limit: 10 });
  assert.deepEqual(
    all.map((c) => c.caseId),
    ['c', 'b', 'a'],
  );
  assert.deepEqual(
    (await store.signals.candidates({ model: 'm', limit: 10 })).map((c) => c.caseId),
    ['b', 'a'],
    "a name's versions, not another name that starts alike",
  );
  assert.deepEqual(
    (await store.signals.candidates({ model: 'm@2', since: '2026-01-02T00:00:00.000Z', limit: 10 })).map(
      (c) => c.caseId,
    ),
    ['b'],
  );
  const drift = await store.signals.since('m@2', 'prediction', '2026-01-01T00:00:00.000Z', 10);
  assert.deepEqual(drift[0]?.inputs, inputs);
  assert.equal(drift[0]?.atypicality, 99.5);
  assert.deepEqual(await store.signals.since('m@2', 'slide', '2026-01-01T00:00:00.000Z', 10), [], 'one kind');

  assert.equal(await requiredReaders(store.db), 1);
  await setRequiredReaders(store.db, 2);
  await setRequiredReaders(store.db, 2);
  assert.equal(await requiredReaders(store.db), 2);
  for (const reviewer of ['paula', 'rita'])
    await store.reviews.add({
      caseKind: 'prediction',
      caseId: 'a',
      reviewer,
      reviewerId: reviewer,
      label: 'FL',
      otherText: null,
      patient: null,
      comment: '',
      modelId: 'm@1',
      predicted: 'FL',
    });
  assert.deepEqual([...(await casesRead(store.db, 2))], ['prediction:a']);
}

describe('the review loop records', () => {
  let pg: TestPostgres | undefined;
  before(async () => {
    pg = await startPostgres();
  });
  after(() => pg?.stop());

  it('on SQLite', async () => {
    const store = await openStore(tempDir());
    try {
      await exercise(store);
    } finally {
      await store.close();
    }
  });

  it('on PostgreSQL', async () => {
    assert.ok(pg);
    const store = await openStore(tempDir(), pg.url);
    try {
      await exercise(store);
    } finally {
      await store.close();
    }
  });
});
