/**
 * Slide features spread over processes through pg-boss on one PostgreSQL: `data features
 * --database` queues one job per slide and works along with two `workers features` processes on
 * the same workspace; every slide is extracted exactly once, and the bags are those one process
 * makes alone (so a cross-validation over them is the same).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import pg from 'pg';

import { readBagRows } from '../../src/train/slide-bag-file.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir, repoRoot, runCli } from '../helpers.js';
import { startPostgres, type TestPostgres } from '../postgres.js';
import { bagFolder, MOBILENET, slideWorkspace, writeSlideSet } from '../slide-bag-fixtures.js';

const needsShared = { skip: !(hasShared(lymphomaDir) && hasShared(MOBILENET)) && 'needs ../shared' };

function start(args: string[]): {
  child: ChildProcess;
  done: Promise<{ code: number | null; stderr: string }>;
} {
  const child = spawn(process.execPath, [path.join(repoRoot, 'bin/pathotype.js'), ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const done = new Promise<{ code: number | null; stderr: string }>((resolve) =>
    child.on('exit', (code) => resolve({ code, stderr })),
  );
  return { child, done };
}

describe('slide features over workers (PostgreSQL, pg-boss)', needsShared, () => {
  let cluster: TestPostgres | undefined;
  before(async () => {
    cluster = await startPostgres();
  });
  after(() => cluster?.stop());

  it('extracts every slide once over three processes, the bags those of one process', async () => {
    assert.ok(cluster);
    const client = new pg.Client({ connectionString: cluster.url });
    await client.connect();
    await client.query('CREATE DATABASE features');
    await client.end();
    const url = cluster.url.replace(/\/postgres$/, '/features');

    const dir = tempDir();
    const set = await writeSlideSet(dir, ['sj-03-2810', 'sj-05-1467', 'sj-04-3077'], 3);
    const shared = await slideWorkspace(path.join(dir, 'shared'), set);
    const workers = [0, 1].map(() => start(['-w', shared, 'workers', 'features', '--database', url]));
    const recipe = ['--preset', 'resnet50-probe', '--config', set.recipe];
    const queued = await runCli(['-w', shared, 'data', 'features', ...recipe, '--database', url, '--json']);
    assert.equal(queued.code, 0, queued.stderr);
    for (const w of workers) w.child.kill('SIGTERM');
    for (const w of workers) {
      const { code, stderr } = await w.done;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /workers features: stopped after \d+ slides/);
    }
    const result = JSON.parse(queued.stdout) as { bags: unknown[]; extracted: number; cached: number };
    const spread = bagFolder(shared);
    const slides = spread.log.map((l) => l.slide).sort();
    assert.equal(slides.length, spread.bags.length, 'one extraction per slide');
    assert.equal(new Set(slides).size, slides.length, 'no slide extracted twice');
    assert.equal(result.extracted, spread.bags.length);
    assert.equal(result.bags.length, spread.bags.length);
    const pids = new Set(spread.log.map((l) => l.pid));
    process.stderr.write(`# ${slides.length} slides extracted by ${pids.size} processes\n`);

    // One process alone on its own workspace: the same bags, row for row.
    const alone = await slideWorkspace(path.join(dir, 'alone'), set);
    const single = await runCli(['-w', alone, 'data', 'features', ...recipe]);
    assert.equal(single.code, 0, single.stderr);
    const own = bagFolder(alone);
    assert.deepEqual(own.bags, spread.bags, 'the same slides under the same keys');
    for (const bag of own.bags) {
      const a = await readBagRows(path.join(own.dir, bag));
      const b = await readBagRows(path.join(spread.dir, bag));
      assert.deepEqual(a.coords, b.coords, bag);
      assert.deepEqual(a.regionLabels, b.regionLabels, bag);
      assert.equal(a.features.length, b.features.length);
      let worst = 0;
      for (let i = 0; i < a.features.length; i++)
        worst = Math.max(worst, Math.abs((a.features[i] ?? 0) - (b.features[i] ?? 0)));
      assert.ok(worst < 1e-4, `${bag}: features differ by ${worst}`);
    }
  });
});
