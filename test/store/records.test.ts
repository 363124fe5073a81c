import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { buildServer } from '../../src/serve/app.js';
import { MIGRATIONS } from '../../src/store/migrations.js';
import { openStore, type ServerStore } from '../../src/store/open.js';
import type { PredictionRecord } from '../../src/store/predictions.js';
import { tempDir } from '../fixtures.js';
import { startPostgres, type TestPostgres } from '../postgres.js';
import { trainedPackage } from '../serve/model-fixture.js';

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
async function exercise(server: ServerStore): Promise<void> {
  const store = server.predictions;
  const keys = server.keys;
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

  assert.equal(await server.settings.isProtected(), false);
  const { key, record: created } = await keys.create({ name: 'viewer', role: 'viewer' });
  assert.equal(await server.settings.isProtected(), true);
  assert.equal((await keys.verify(key))?.id, created.id);
  assert.ok((await keys.list())[0]?.lastUsedAt);
  assert.equal(await keys.verify('pt_wrong'), undefined);
  const revoked = await keys.revoke(created.prefix);
  assert.ok(revoked?.revokedAt);
  assert.equal((await keys.revoke(created.id))?.revokedAt, revoked.revokedAt, 'revoked once');
  assert.equal(await keys.verify(key), undefined);
  assert.equal(await server.settings.isProtected(), true, 'revoking the last key leaves the server closed');
  assert.equal(await keys.revoke('nobody'), undefined);
}

/** Audit rows for the chain tests. */
function entry(i: number): Parameters<ServerStore['audit']['append']>[0] {
  return {
    actor: `user${i % 3}`,
    actorKind: 'user',
    action: 'prediction.read',
    caseId: `case-${i}`,
    target: `GET /cases/${i}`,
    status: 200,
    address: '127.0.0.1',
    userAgent: 'test',
  };
}

/**
 * The audit's chain on either store, appended by two stores at once: intact, then each kind of
 * tampering by someone who dropped the append-only triggers is found at its row, and undone.
 */
async function tamperWithAudit(a: ServerStore, b: ServerStore, dropTriggers: string[]): Promise<void> {
  // Places in the chain after the rows other tests of this database wrote.
  const base = (await a.audit.verify()).head?.seq ?? 0;
  const at = (n: number): number => base + n;
  await Promise.all(Array.from({ length: 30 }, (_, i) => (i % 2 ? a : b).audit.append(entry(i))));
  const intact = await a.audit.verify();
  assert.deepEqual({ broken: intact.broken, seq: intact.head?.seq }, { broken: null, seq: at(30) });
  await assert.rejects(
    a.db.run("UPDATE audit SET actor = 'mallory' WHERE chain_seq = ?", [at(7)]),
    /append-only/,
  );
  for (const sql of dropTriggers) await a.db.run(sql);
  const [row7] = await a.db.query<{ actor: string }>('SELECT actor FROM audit WHERE chain_seq = ?', [at(7)]);
  await a.db.run("UPDATE audit SET actor = 'mallory' WHERE chain_seq = ?", [at(7)]);
  assert.deepEqual(pick((await b.audit.verify()).broken), { kind: 'changed', seq: at(7) });
  await a.db.run('UPDATE audit SET actor = ? WHERE chain_seq = ?', [row7?.actor ?? '', at(7)]);
  assert.equal((await b.audit.verify()).broken, null, 'the same content gives the same hash');
  const [row12] = await a.db.query<Record<string, string | number | null>>(
    'SELECT * FROM audit WHERE chain_seq = ?',
    [at(12)],
  );
  await a.db.run('DELETE FROM audit WHERE chain_seq = ?', [at(12)]);
  assert.deepEqual(pick((await b.audit.verify()).broken), { kind: 'removed', seq: at(12) });
  assert.ok(row12);
  const columns = Object.keys(row12).filter((c) => c !== 'seq');
  await a.db.run(
    `INSERT INTO audit (${columns.join(', ')}) VALUES (${columns.map(() => '?').join(', ')})`,
    columns.map((c) => row12[c] ?? null),
  );
  assert.equal((await b.audit.verify()).broken, null);
  await a.db.run(
    "INSERT INTO audit (id, at, actor, actor_kind, action, target, status, address, user_agent) VALUES ('forged', ?, 'ada', 'user', 'login', 'POST /login', 303, '1.2.3.4', 'x')",
    [new Date().toISOString()],
  );
  assert.deepEqual(pick((await b.audit.verify()).broken), { kind: 'inserted', seq: null });
  await a.db.run("DELETE FROM audit WHERE id = 'forged'");
  // A row given a place in the chain, the later rows renumbered to make room: found as inserted.
  const shift = async (from: number, by: number): Promise<void> => {
    // Through negative numbers: the places are unique at every step.
    await a.db.run('UPDATE audit SET chain_seq = -(chain_seq + ?) WHERE chain_seq >= ?', [by, from]);
    await a.db.run('UPDATE audit SET chain_seq = -chain_seq WHERE chain_seq < 0');
  };
  await shift(at(20), 1);
  await a.db.run(
    "INSERT INTO audit (id, at, actor, actor_kind, action, target, status, address, user_agent, chain_seq, hash) VALUES ('forged', ?, 'ada', 'user', 'login', 'POST /login', 303, '1.2.3.4', 'x', ?, 'f00')",
    [new Date().toISOString(), at(20)],
  );
  assert.deepEqual(pick((await b.audit.verify()).broken), { kind: 'inserted', seq: at(20) });
  await a.db.run("DELETE FROM audit WHERE id = 'forged'");
  await shift(at(21), -1);
  assert.equal((await b.audit.verify()).broken, null, 'renumbered back, the chain holds');
  // Rows removed from the end leave a shorter chain that holds: a head kept elsewhere catches it.
  const head = (await b.audit.verify()).head;
  assert.ok(head);
  await a.db.run('DELETE FROM audit WHERE chain_seq = ?', [at(30)]);
  assert.equal((await b.audit.verify()).broken, null);
  assert.deepEqual(pick((await b.audit.verify(head)).broken), { kind: 'removed', seq: at(30) });
}

function pick(
  broken: { kind: string; seq: number | null } | null,
): { kind: string; seq: number | null } | null {
  return broken ? { kind: broken.kind, seq: broken.seq } : null;
}

/** Failed sign-ins on either store: a known and an unknown name alike, the owner elsewhere unharmed. */
async function throttleSignIns(store: ServerStore): Promise<void> {
  const password = 'correct horse battery';
  await store.users.add('lena', 'viewer', password);
  for (const name of ['lena', 'nobody']) {
    for (let i = 0; i < 5; i++)
      await assert.rejects(store.users.signIn(name, 'wrong password', '10.0.0.1'), { code: 'ERR_LOGIN' });
    await assert.rejects(store.users.signIn(name, password, '10.0.0.1'), { code: 'ERR_LOCKED' });
  }
  const lena = await store.users.signIn('lena', password, '10.0.0.2');
  assert.equal(lena.name, 'lena', 'the owner signs in from an address that has not failed');
  assert.equal(await store.users.recentFailures(lena), 5);
  await store.users.unlock('lena');
  assert.equal((await store.users.signIn('lena', password, '10.0.0.1')).name, 'lena');
  const stored = await store.db.query<{ name_key: string }>('SELECT name_key FROM sign_in_failures');
  assert.ok(
    stored.every((r) => /^[0-9a-f]{64}$/.test(r.name_key)),
    'names are kept only as keyed hashes',
  );
}

describe('record stores', () => {
  let pg: TestPostgres | undefined;
  before(async () => {
    pg = await startPostgres();
  });
  after(() => pg?.stop());

  it('SQLite keeps predictions and keys', async () => {
    const store = await openStore(tempDir());
    try {
      await exercise(store);
    } finally {
      await store.close();
    }
  });

  it('PostgreSQL keeps them the same way, migrated once by servers starting together', async () => {
    assert.ok(pg);
    const shared = tempDir();
    const [a, b] = await Promise.all([openStore(shared, pg.url), openStore(shared, pg.url)]);
    try {
      await exercise(a);
      // Two servers writing at once: every record lands once, both see all of them.
      const before = (await a.predictions.list({ limit: 1, offset: 0 })).total;
      await Promise.all(
        Array.from({ length: 40 }, (_, i) =>
          (i % 2 ? a : b).predictions.insert(
            record((i % 2 ? a : b).predictions.newId(), `x${i}.png`, new Date(Date.now() + i).toISOString()),
          ),
        ),
      );
      assert.equal((await b.predictions.list({ limit: 1, offset: 0 })).total, before + 40);
      // An upload no record names, older than a minute, is removed; a fresh one may be in flight.
      writeFileSync(path.join(a.predictions.uploadsDir, 'fresh.png'), 'x');
      assert.equal(await a.predictions.removeOrphanUploads(), 0);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('the audit chain shows a row changed, removed or inserted with the triggers dropped, on SQLite', async () => {
    const store = await openStore(tempDir());
    try {
      await tamperWithAudit(store, store, ['DROP TRIGGER audit_no_update', 'DROP TRIGGER audit_no_delete']);
    } finally {
      await store.close();
    }
  });

  it('and on PostgreSQL, appended by two servers at once', async () => {
    assert.ok(pg);
    const shared = tempDir();
    const [a, b] = await Promise.all([openStore(shared, pg.url), openStore(shared, pg.url)]);
    try {
      await tamperWithAudit(a, b, ['DROP TRIGGER audit_no_change ON audit']);
      await throttleSignIns(a);
    } finally {
      await a.close();
      await b.close();
    }
  });

  it('failed sign-ins throttle a known and an unknown name alike, per address (SQLite)', async () => {
    const store = await openStore(tempDir());
    try {
      await throttleSignIns(store);
    } finally {
      await store.close();
    }
  });

  it('two servers on one database and upload folder answer for each other', async () => {
    assert.ok(pg);
    const { modelDir, images } = await trainedPackage();
    const dataDir = tempDir();
    const options = { modelDir, dataDir, database: pg.url };
    const [a, b] = await Promise.all([buildServer(options), buildServer(options)]);
    try {
      // The deployment is protected (the store test above made a key): a key made on one server
      // opens both, and nothing answers without one.
      const { key: writer } = await a.store.keys.create({ name: 'scanner', role: 'pathologist' });
      const auth = { authorization: `Bearer ${writer}` };
      const png = readFileSync(path.join(images, 'BLOB/0.png'));
      const created = await a.app.inject({
        method: 'POST',
        url: '/api/v1/predictions?filename=shared.png',
        payload: png,
        headers: { 'content-type': 'image/png', ...auth },
      });
      assert.equal(created.statusCode, 201, created.body);
      const id = created.json<{ id: string }>().id;
      const seen = await b.app.inject({ url: `/api/v1/predictions/${id}`, headers: auth });
      assert.equal(seen.statusCode, 200);
      assert.equal(seen.json<{ fileName: string }>().fileName, 'shared.png');
      assert.equal((await b.app.inject({ url: `/cases/${id}/image.png`, headers: auth })).statusCode, 200);
      assert.equal((await b.app.inject(`/cases/${id}/image.png`)).statusCode, 401);
      const { key } = await a.store.keys.create({ name: 'viewer', role: 'viewer' });
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

  it('two servers on one database share sessions: signed in on one, signed out on both', async () => {
    assert.ok(pg);
    const { modelDir } = await trainedPackage();
    const options = { modelDir, dataDir: tempDir(), database: pg.url };
    const [a, b] = await Promise.all([buildServer(options), buildServer(options)]);
    const origin = 'http://localhost:80';
    try {
      await a.store.users.add('shared-user', 'viewer', 'correct horse battery');
      const signIn = await a.app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
        payload: 'name=shared-user&password=correct+horse+battery',
      });
      assert.equal(signIn.statusCode, 303);
      const session = signIn.cookies.find((c) => c.name === 'pathotype_session');
      assert.ok(session);
      const cookie = `pathotype_session=${session.value}`;
      const page = await b.app.inject({ url: '/', headers: { cookie } });
      assert.equal(page.statusCode, 200, 'the session made on one server works on the other');
      const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page.body)?.[1] ?? '';
      const out = await b.app.inject({
        method: 'POST',
        url: '/logout',
        headers: { 'content-type': 'application/x-www-form-urlencoded', cookie, origin },
        payload: `_csrf=${encodeURIComponent(csrf)}`,
      });
      assert.equal(out.statusCode, 303);
      for (const server of [a, b])
        assert.equal(
          (await server.app.inject({ url: '/api/v1/models', headers: { cookie } })).statusCode,
          401,
          'signed out on both',
        );
    } finally {
      await a.app.close();
      await b.app.close();
    }
  });

  it('refuses a database URL that is not PostgreSQL, and an unreachable one with ERR_DATABASE', async () => {
    await assert.rejects(openStore(tempDir(), 'mysql://x'), /postgres:\/\/ URL/);
    await assert.rejects(openStore(tempDir(), 'postgres://nobody@127.0.0.1:1/none'), {
      code: 'ERR_DATABASE',
    });
  });

  it('brings a SQLite file written before the schema was numbered up to date, its records readable', async () => {
    const dir = tempDir();
    const legacy = new Database(path.join(dir, 'serve.sqlite'));
    legacy.exec(`CREATE TABLE predictions (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, file_name TEXT NOT NULL,
      sha256 TEXT NOT NULL, bytes INTEGER NOT NULL, width INTEGER NOT NULL, height INTEGER NOT NULL,
      model_id TEXT NOT NULL, model_version INTEGER NOT NULL, result TEXT NOT NULL, timings TEXT NOT NULL,
      client TEXT NOT NULL, image_file TEXT);
      CREATE TABLE slide_jobs (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
      status TEXT NOT NULL, file_name TEXT NOT NULL, slide_path TEXT NOT NULL, uploaded INTEGER NOT NULL,
      slide_mpp REAL, done INTEGER NOT NULL DEFAULT 0, total INTEGER NOT NULL DEFAULT 0, error TEXT,
      summary TEXT, model_id TEXT NOT NULL);`);
    // A record from before calibration: no status, confidence or probabilities.
    const old = record('0a0b0c0d-0000-4000-8000-000000000000', 'old.png', '2025-01-01T00:00:00.000Z');
    old.result = {
      predicted: 'FL',
      meanProbabilities: { FL: 0.7, CLL: 0.3 },
    } as unknown as PredictionRecord['result'];
    legacy
      .prepare('INSERT INTO predictions VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)')
      .run(
        old.id,
        old.createdAt,
        old.fileName,
        old.sha256,
        old.bytes,
        old.width,
        old.height,
        old.modelId,
        old.modelVersion,
        JSON.stringify(old.result),
        JSON.stringify(old.timings),
        JSON.stringify(old.client),
        null,
      );
    legacy.close();
    const store = await openStore(dir);
    try {
      const got = await store.predictions.get(old.id);
      assert.equal(got?.result.status, 'answered');
      assert.equal(got.result.confidence, 0.7);
      assert.equal(got.result.threshold, null);
      const columns = await store.db.query<{ name: string }>(
        "SELECT name FROM pragma_table_info('slide_jobs')",
      );
      assert.ok(columns.some((c) => c.name === 'attempts'));
      const versions = await store.db.query<{ version: number }>('SELECT version FROM schema_migrations');
      assert.deepEqual(
        versions.map((v) => v.version).sort(),
        MIGRATIONS.map((m) => m.version),
      );
    } finally {
      await store.close();
    }
  });
});
