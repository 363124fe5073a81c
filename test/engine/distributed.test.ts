import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

import { manualSeed, Network } from '../../src/engine/network.js';
import { freeLoopbackPort } from '../../src/io/net.js';
import { makePatternSet } from '../../src/engine/synthetic.js';
import { patternWorkspace, tempDir, writeFile, writePatternDataset } from '../fixtures.js';
import { runCli } from '../helpers.js';
import { DDP_STEPS, ddpSpec, flatWeights } from './ddp-common.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ddp-worker.js');

function rank(args: string[]): Promise<{ code: number | null; stderr: string; seconds: number }> {
  const started = performance.now();
  const child = spawn(process.execPath, [worker, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: { ...process.env, PATHOTYPE_THREADS: '1' },
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve) =>
    child.on('close', (code) => resolve({ code, stderr, seconds: (performance.now() - started) / 1000 })),
  );
}

function maxDifference(a: readonly number[], b: readonly number[]): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return max;
}

describe('data-parallel training on c10d (Gloo)', () => {
  it('two ranks on loopback hold the same weights after every step, and those of one process on the whole batch', async () => {
    const dir = tempDir();
    const port = await freeLoopbackPort();
    const outs = [0, 1].map((r) => path.join(dir, `rank${r}.json`));
    const results = await Promise.all(
      [0, 1].map((r) => rank([String(r), '2', String(port), outs[r] as string])),
    );
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    const [w0, w1] = outs.map((f) => JSON.parse(readFileSync(f, 'utf8')) as number[][]);
    assert.ok(w0 && w1);

    // One process, rank 0's start, the 16 images the two ranks split between them.
    manualSeed(1);
    const network = await Network.create(ddpSpec());
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.05, momentum: 0.9 });
    const set = makePatternSet(16, 24, 3);
    for (let step = 0; step < DDP_STEPS; step++) {
      await network.trainStep(set.images, set.labels, { batchNormEval: true });
      const single = await flatWeights(network);
      assert.ok(maxDifference(w0[step] ?? [], w1[step] ?? []) < 1e-6, `ranks differ after step ${step + 1}`);
      const gap = maxDifference(w0[step] ?? [], single);
      assert.ok(gap < 1e-4, `step ${step + 1}: two ranks vs one process differ by ${gap}`);
    }
    // The steps changed the weights: the comparison is not between untouched networks.
    manualSeed(1);
    const untouched = await flatWeights(await Network.create(ddpSpec()));
    assert.ok(maxDifference(untouched, w0[DDP_STEPS - 1] ?? []) > 1e-3);
  });

  it('trains from the command line with two local ranks: rank 0 writes the package', async () => {
    const { workspace, catalog } = await patternWorkspace(8, {
      testFraction: 0.25,
      validationFraction: 0.25,
      seed: 2,
    });
    catalog.close();
    const result = await runCli([
      '-w',
      workspace.root,
      'train',
      '--store',
      'patterns',
      '--name',
      'ddp',
      '--architecture',
      'small_cnn',
      '--epochs',
      '2',
      '--batch-size',
      '8',
      '--no-bf16',
      '--nproc',
      '2',
      '--json',
    ]);
    assert.equal(result.code, 0, result.stderr);
    const manifest = JSON.parse(readFileSync(path.join(workspace.modelsDir, 'ddp/model.json'), 'utf8')) as {
      training: { epochsRun: number };
      history: { validationImageAccuracy?: number }[];
    };
    assert.equal(manifest.training.epochsRun, 2);
    assert.equal(manifest.history.length, 2);
    assert.ok(manifest.history.every((h) => h.validationImageAccuracy !== undefined));
  });

  it('runs the whole workflow with each model trained by two ranks', async () => {
    const data = tempDir();
    await writePatternDataset(data, 8);
    const ws = path.join(tempDir(), 'ws');
    const config = writeFile(
      path.join(tempDir(), 'run.json'),
      JSON.stringify({
        groupBy: 'none',
        split: { kind: 'holdout', testFraction: 0.25, validationFraction: 0, seed: 3 },
        prepare: { normalisation: 'none', targetScale: null, patchSize: 24, stride: 12 },
        train: { phases: [{ epochs: 1, learningRate: 0.003 }], batchSize: 8, bf16: false },
      }),
    );
    const result = await runCli([
      '-w',
      ws,
      'run',
      '--preset',
      'small-cnn',
      '--data',
      data,
      '--config',
      config,
      '--name',
      'ddp-run',
      '--nproc',
      '2',
    ]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /image accuracy/);
    assert.ok(existsSync(path.join(ws, 'models/ddp-run/model.json')));
  });

  it('a rank that dies makes the other fail with a clear error within the timeout, not hang', async () => {
    const dir = tempDir();
    const port = await freeLoopbackPort();
    const [survivor, dead] = await Promise.all([
      rank(['0', '2', String(port), path.join(dir, 'rank0.json'), 'train', '5000']),
      rank(['1', '2', String(port), path.join(dir, 'rank1.json'), 'die', '5000']),
    ]);
    assert.equal(dead.code, 3);
    assert.notEqual(survivor.code, 0);
    assert.ok(survivor.seconds < 30, `the survivor took ${survivor.seconds.toFixed(1)} s`);
    assert.match(survivor.stderr, /ERR_GROUP/);
    assert.match(survivor.stderr, /another rank failed or left/);
  });
});
