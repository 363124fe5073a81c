import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { startPostgres, type TestPostgres } from '../postgres.js';
import { fieldsOf, writeTestSlide } from '../slide-fixtures.js';
import { slideScalePackage } from './model-fixture.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'pg-server-worker.js');

interface Job {
  id: string;
  status: string;
}

/** A fresh database of the cluster, so each test's queue has its own settings. */
async function database(cluster: TestPostgres, name: string): Promise<string> {
  const client = new pg.Client({ connectionString: cluster.url });
  await client.connect();
  await client.query(`CREATE DATABASE ${name}`);
  await client.end();
  return cluster.url.replace(/\/postgres$/, `/${name}`);
}

async function row(
  url: string,
  id: string,
): Promise<{ status: string; attempts: number; worker: string | null }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const { rows } = await client.query<{ status: string; attempts: number; worker: string | null }>(
      'SELECT status, attempts, worker FROM slide_jobs WHERE id = $1',
      [id],
    );
    return rows[0] ?? { status: 'missing', attempts: 0, worker: null };
  } finally {
    await client.end();
  }
}

async function until(check: () => Promise<boolean>, seconds: number): Promise<void> {
  const end = Date.now() + seconds * 1000;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not within ${seconds} s`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

describe(
  'slide jobs shared by several servers (PostgreSQL, pg-boss)',
  { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
  () => {
    let cluster: TestPostgres | undefined;
    let model: { modelDir: string };
    let root: string;
    before(async () => {
      cluster = await startPostgres();
      model = await slideScalePackage();
      root = tempDir();
      await writeTestSlide(path.join(root, 'small.tif'), [...fieldsOf('CLL', 2)], { across: 2 });
      // About 9,000 tiles: long enough to kill the server holding it midway.
      await writeTestSlide(
        path.join(root, 'large.tif'),
        [...fieldsOf('CLL', 24), ...fieldsOf('FL', 24), ...fieldsOf('MCL', 24)],
        { across: 12, compression: 'jpeg' },
      );
    });
    after(() => cluster?.stop());

    it('each job is taken by exactly one of two servers, and both answer for it', async () => {
      assert.ok(cluster);
      const url = await database(cluster, 'shared_one');
      const dataDir = tempDir();
      const options = { ...model, dataDir, database: url, slideRoot: root };
      const servers: PathotypeServer[] = await Promise.all([buildServer(options), buildServer(options)]);
      try {
        const [a, b] = servers as [PathotypeServer, PathotypeServer];
        const ids: string[] = [];
        for (let i = 0; i < 4; i++) {
          const created = await (i % 2 ? a : b).app.inject({
            method: 'POST',
            url: '/api/v1/slides',
            payload: { path: 'small.tif' },
          });
          assert.equal(created.statusCode, 202, created.body);
          ids.push(created.json<Job>().id);
        }
        for (const id of ids) {
          await until(async () => (await row(url, id)).status === 'done', 60);
          const r = await row(url, id);
          assert.equal(r.attempts, 1, `job ${id} was taken ${r.attempts} times`);
          assert.equal((await a.app.inject(`/api/v1/slides/${id}/geojson`)).statusCode, 200);
          assert.equal((await b.app.inject(`/api/v1/slides/${id}`)).json<Job>().status, 'done');
        }
      } finally {
        await Promise.all(servers.map((s) => s.app.close()));
      }
    });

    it('a job survives the death of the server that held it: another server takes it and finishes', async () => {
      assert.ok(cluster);
      const url = await database(cluster, 'shared_two');
      const dataDir = tempDir();
      // The first server, in its own process and alone, takes the job; it is killed while it runs.
      // A job held this long without finishing is retried: short, so the killed server's job comes
      // back soon, yet long enough for the survivor to finish the slide on a busy 2-core machine
      // (at 10 s its own attempt expired there too and the job was taken a third time).
      const expireSeconds = 30;
      const child = spawn(
        process.execPath,
        [worker, model.modelDir, dataDir, url, root, String(expireSeconds)],
        {
          stdio: ['ignore', 'pipe', 'inherit'],
        },
      );
      try {
        const address = await new Promise<string>((resolve) =>
          child.stdout.on('data', (d: Buffer) => {
            const match = /ready (\S+)/.exec(d.toString());
            if (match?.[1]) resolve(match[1]);
          }),
        );
        const created = await fetch(`${address}/api/v1/slides`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ path: 'large.tif' }),
        });
        assert.equal(created.status, 202);
        const { id } = (await created.json()) as Job;
        await until(async () => (await row(url, id)).status === 'running', 60);
        const holder = (await row(url, id)).worker;
        assert.match(holder ?? '', new RegExp(`:${String(child.pid)}:`));
        child.kill('SIGKILL');
        // A second server: after the job expires, pg-boss retries it and this one finishes it.
        const survivor = await buildServer({
          ...model,
          dataDir,
          database: url,
          slideRoot: root,
          sharedQueue: { expireSeconds, maintenanceSeconds: 1 },
        });
        try {
          await until(async () => (await row(url, id)).status === 'done', 120);
          const r = await row(url, id);
          assert.equal(r.attempts, 2, 'taken by the killed server, then by the survivor');
          assert.notEqual(r.worker, holder);
          assert.equal((await survivor.app.inject(`/api/v1/slides/${id}/geojson`)).statusCode, 200);
        } finally {
          await survivor.app.close();
        }
      } finally {
        child.kill('SIGKILL');
      }
    });
  },
);
