/**
 * `pathotype data features`: killed with SIGKILL once its first slide is written, a rerun extracts
 * only the slides not finished (each slide once in the extraction log, finished bags untouched,
 * nothing half-written left behind); it prints each slide's quality, and the slides left out with
 * their reason.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir, repoRoot, runCli } from '../helpers.js';
import { bagFolder, MOBILENET, slideWorkspace, writeSlideSet } from '../slide-bag-fixtures.js';

const needsShared = { skip: !(hasShared(lymphomaDir) && hasShared(MOBILENET)) && 'needs ../shared' };

describe('pathotype data features', needsShared, () => {
  it('resumes after kill -9 without extracting finished slides again, and says which slides are left out', async () => {
    const dir = tempDir();
    const set = await writeSlideSet(dir, ['sj-03-2810', 'sj-05-1467'], 6);
    const workspace = await slideWorkspace(path.join(dir, 'workspace'), set);
    const args = ['-w', workspace, 'data', 'features', '--preset', 'resnet50-probe', '--config', set.recipe];

    // The first run, killed as soon as its first slide's bag is in the log.
    const child = spawn(process.execPath, [path.join(repoRoot, 'bin/pathotype.js'), ...args], {
      stdio: 'ignore',
    });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      child.on('exit', (_code, signal) => resolve(signal)),
    );
    const logged = (): number => {
      const features = path.join(workspace, 'features');
      return existsSync(features) && readdirSync(features).length > 0 ? bagFolder(workspace).log.length : 0;
    };
    const deadline = Date.now() + 120_000;
    while (logged() === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    child.kill('SIGKILL');
    assert.equal(await exited, 'SIGKILL');
    const killed = bagFolder(workspace);
    assert.ok(
      killed.log.length >= 1 && killed.log.length < 4,
      `${killed.log.length} slides done when killed`,
    );
    const finished = new Map(killed.log.map((l) => [l.slide, l]));
    const before = new Map(killed.bags.map((b) => [b, statSync(path.join(killed.dir, b)).mtimeMs]));

    const rerun = await runCli(args);
    assert.equal(rerun.code, 0, rerun.stderr);
    const after = bagFolder(workspace);
    assert.equal(after.bags.length, 4);
    // Every slide extracted exactly once over both runs: the finished ones not again.
    assert.deepEqual(after.log.map((l) => l.slide).sort(), [
      'sj-03-2810-a.tiff',
      'sj-03-2810-b.tiff',
      'sj-05-1467-a.tiff',
      'sj-05-1467-b.tiff',
    ]);
    for (const l of after.log.slice(killed.log.length))
      assert.ok(!finished.has(l.slide), `${l.slide} extracted again`);
    for (const [bag, mtime] of before) assert.equal(statSync(path.join(after.dir, bag)).mtimeMs, mtime, bag);
    assert.deepEqual(
      readdirSync(after.dir).filter((n) => /\.(part|tmp)$/.test(n)),
      [],
      'nothing half-written left',
    );
    assert.match(rerun.stdout, new RegExp(`${killed.log.length} already there`));
    assert.match(rerun.stdout, /sj-03-2810-a\.tiff: [\d.]+ mm\^2 of tissue, \d+ usable of \d+ tissue tiles/);

    const strict = await runCli([...args, '--min-tiles', '100000', '--json']);
    assert.equal(strict.code, 0, strict.stderr);
    const result = JSON.parse(strict.stdout) as {
      bags: unknown[];
      excluded: { reason: string }[];
      extracted: number;
    };
    assert.equal(result.extracted, 0);
    assert.equal(result.bags.length, 0);
    assert.equal(result.excluded.length, 4);
    assert.match(result.excluded[0]?.reason ?? '', /at least 100000 are needed/);
    const text = await runCli([...args, '--min-tiles', '100000']);
    assert.match(text.stdout, /left out .*sj-05-1467-b\.tiff: \d+ usable tiles of \d+ tissue tiles/);
  });
});
