import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { buildServer } from '../../src/serve/app.js';
import { openRecords } from '../../src/serve/open-records.js';
import type { PredictionRecord, RecordStore } from '../../src/serve/records.js';
import { tempDir } from '../fixtures.js';
import { startPostgres, type TestPostgres } from '../postgres.js';
import { trainedPackage } from './model-fixture.js';

function record(id: string, fileName: string, createdAt: string): PredictionRecord {
  return {
    id,
    createdAt,
    fileName,
    sha256: 'a'.repeat(64),
    bytes: 10,
    width: 4,
    height: 3,
    modelId: 'm@1',
    modelVersion: 1,
    result: { predicted: 'FL' } as PredictionRecord['result'],
    timings: { totalMs: 1, queueMs: 0, preprocessMs: 0, inferenceMs: 1 },
    client: { address: '127.0.0.1', userAgent: 'test', keyId: null },
    imageFile: `${id}.png`,
  };
}

/** The same behaviour from either store. */
async function exercise(store: RecordStore): Promise<void> {
  const ids = [0, 1, 2].map(() => store.newId());
  await store.insert(record(ids[0] as string, 'CLL_a.png', '2026-01-01T00:00:00.000Z'));
  await store.insert(record(ids[1] as string, 'FL 100%_b.png', '2026-01-02T00:00:00.000Z'));
  await store.insert(record(ids[2] as string, 'FL_c.png', '2026-01-03T00:00:00.000Z'));
  const got = await store.get(ids[1] as string);
  assert.equal(got?.fileName, 'FL 100%_b.png');
  assert.deepEqual(got?.client, { address: '127.0.0.1', userAgent: 'test', keyId: null });
  assert.equal(await store.get('missing'), undefined);
  const page = await store.list({ limit: 2, offset: 0 });
  assert.equal(page.total, 3);
  assert.deepEqual(
    page.items.map((r) => r.fileName),
    ['FL_c.png', 'FL 100%_b.png'],
  );
  // % and _ are literal in a search.
  assert.deepEqual(
    (await store.list({ limit: 10, offset: 0, query: '100%' })).items.map((r) => r.id),
    [ids[1]],
  );
  assert.equal((await store.list({ limit: 10, offset: 0, query: 'FL_' })).total, 1);
  // The image path once the upload is there (a record outlives its image when that is not kept).
  assert.equal(store.imagePath(got), null);
  writeFileSync(path.join(store.uploadsDir, `${ids[1] ?? ''}.png`), 'png');
  assert.equal(store.imagePath(got), path.join(store.uploadsDir, `${ids[1] ?? ''}.png`));

  assert.equal(await store.keysRequired(), false);
  const { key, record: created } = await store.createKey('viewer');
  assert.equal(await store.keysRequired(), true);
  assert.equal((await store.verifyKey(key))?.id, created.id);
  assert.ok((await store.keys())[0]?.lastUsedAt);
  assert.equal(await store.verifyKey('pt_wrong'), undefined);
  assert.ok((await store.revokeKey(created.prefix))?.revokedAt);
  assert.equal(await store.verifyKey(key), undefined);
  assert.equal(await store.keysRequired(), false);
  assert.equal(await store.revokeKey('nobody'), undefined);
}

describe('record stores', () => {
  let pg: TestPostgres | undefined;
  before(async () => {
    pg = await startPostgres();
  });
  after(() => pg?.stop());

  it('SQLite keeps predictions and keys', async () => {
    const store = await openRecords(tempDir());
    try {
      await exercise(store);
    } finally {
      await store.close();
    }
  });

  it('PostgreSQL keeps them the same way, migrated once by servers starting together', async () => {
    assert.ok(pg);
    const shared = tempDir();
    const [a, b] = await Promise.all([openRecords(shared, pg.url), openRecords(shared, pg.url)]);
    try {
      await exercise(a);
      // Two servers writing at once: every record lands once, both see all of them.
      const before = (await a.list({ limit: 1, offset: 0 })).total;
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? a : b).insert(
            record((i % 2 ? a : b).newId(), `x${i}.png`, new Date(Date.now() + i).toISOString()),
          ),
        ),
      );
      assert.equal((await b.list({ limit: 1, offset: 0 })).total, before + 40);
      // An upload no record names, older than a minute, is removed; a fresh one may be in flight.
      writeFileSync(path.join(a.uploadsDir, 'fresh.png'), 'x');
      assert.equal(await a.removeOrphanUploads(), 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('two servers on one database and upload folder answer for each other', async () => {
    assert.ok(pg);
    const { modelDir, images } = await trainedPackage();
    const dataDir = tempDir();
    const options = { modelDir, dataDir, database: pg.url };
    const [a, b] = await Promise.all([buildServer(options), buildServer(options)]);
    try {
      const png = readFileSync(path.join(images, 'BLOB/0.png'));
      const created = await a.app.inject({
        method: 'POST',
        url: '/api/v1/predictions?filename=shared.png',
        payload: png,
        headers: { 'content-type': 'image/png' },
      });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      const seen = await b.app.inject(`/api/v1/predictions/${id}`);
      assert.equal(seen.statusCode, 200);
      assert.equal(seen.json<{ fileName: string }>().fileName, 'shared.png');
      assert.equal((await b.app.inject(`/cases/${id}/image.png`)).statusCode, 200);
      // A key made through one server guards both.
      const { key } = await a.records.createKey('viewer');
      assert.equal((await b.app.inject('/api/v1/models')).statusCode, 401);
      assert.equal(
        (await b.app.inject({ url: '/api/v1/models', headers: { authorization: `Bearer ${key}` } }))
          .statusCode,
        200,
      );
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });

  it('refuses a database URL that is not PostgreSQL, and an unreachable one with ERR_DATABASE', async () => {
    await assert.rejects(openRecords(tempDir(), 'mysql://x'), /postgres:\/\/ URL/);
    await assert.rejects(openRecords(tempDir(), 'postgres://nobody@127.0.0.1:1/none'), {
      code: 'ERR_DATABASE',
    });
  });
});
