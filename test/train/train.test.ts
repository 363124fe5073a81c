import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { evaluateModel } from '../../src/evaluate/evaluate.js';
import { loadPackageNetwork, readManifest } from '../../src/model/package.js';
import { Predictor } from '../../src/predict/predictor.js';
import { merge } from '../../src/config.js';
import { resolveTrainConfig, type TrainConfig, type TrainConfigInput } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { patternWorkspace, tempDir } from '../fixtures.js';

function workspaceWithPatterns(validation = 0.25): ReturnType<typeof patternWorkspace> {
  return patternWorkspace(12, { testFraction: 0.25, validationFraction: validation, seed: 2 });
}

function config(overrides: Partial<TrainConfigInput> = {}): TrainConfig {
  return resolveTrainConfig({
    name: 'patterns-cnn',
    store: 'patterns',
    architecture: 'small_cnn',
    head: { hidden: [16], dropout: 0.1 },
    phases: [{ epochs: 4, optimizer: 'adam', learningRate: 3e-3 }],
    batchSize: 16,
    augment: { flip: true, rotate90: true, stain: { hedScale: 0.05, brightness: 0.05 } },
    seed: 4,
    threads: 2,
    ...overrides,
  });
}

describe('training, packages and evaluation', () => {
  it('trains a package that evaluate, predict and the heatmap use', async () => {
    const { workspace, catalog, root } = await workspaceWithPatterns();
    const result = await train(workspace, config());
    assert.equal(result.manifest.history.length, 4);
    assert.ok(result.manifest.history.every((e) => e.validationImageAccuracy !== undefined));
    assert.deepEqual(result.manifest.classes, ['BLOB', 'CHECKER', 'STRIPES']);
    assert.equal(result.manifest.data.store, 'patterns');
    assert.match(result.manifest.data.fingerprint, /^[0-9a-f]{40}$/);
    assert.equal(result.manifest.version, 1);

    const evaluation = await evaluateModel(catalog, workspace, result.packageDir);
    const r = evaluation.report;
    assert.ok(r.imageMajority.accuracy >= 0.8, `image accuracy ${r.imageMajority.accuracy}`);
    assert.equal(r.images.length, r.imageMajority.n);
    assert.ok(r.patch.n > r.imageMajority.n);
    const html = readFileSync(evaluation.html, 'utf8');
    assert.match(html, /Research use only, not for diagnosis/);
    assert.match(html, /data:image\/png;base64,/);
    assert.doesNotMatch(html, /<script|https?:\/\//, 'the report is self-contained and offline');
    assert.equal(readManifest(result.packageDir).metrics.test !== undefined, true);

    // The package alone predicts an image as evaluation did.
    const predictor = await Predictor.load(result.packageDir);
    const test = r.images[0];
    assert.ok(test);
    const file = path.join(root, test.className, test.fileName);
    const [prediction] = await predictor.predictImages([{ source: file, name: test.fileName }]);
    assert.equal(prediction?.predicted, test.predicted);
    assert.equal(prediction?.patches, test.patches);
    assert.equal(prediction?.grid.cells.length, test.patches);
    catalog.close();
  });

  it('resumes after an interruption exactly where it stopped', async () => {
    const { workspace, catalog } = await workspaceWithPatterns(0);
    const whole = await train(workspace, config({ name: 'whole' }));
    await assert.rejects(
      train(workspace, config({ name: 'split' }), { stopAfterEpochs: 2 }),
      /stopped after 2 epochs/,
    );
    const resumed = await train(workspace, config({ name: 'split' }), { resume: true });
    assert.equal(resumed.resumedFrom, 2);
    assert.deepEqual(
      resumed.manifest.history.map((e) => e.loss),
      whole.manifest.history.map((e) => e.loss),
      'the resumed run repeats the uninterrupted one',
    );
    const a = (await loadPackageNetwork(whole.packageDir)).network;
    const b = (await loadPackageNetwork(resumed.packageDir)).network;
    const wa = await a.exportTensors();
    const wb = new Map((await b.exportTensors()).map((t) => [t.name, t.data]));
    for (const t of wa) assert.deepEqual(wb.get(t.name), t.data, t.name);
    // A checkpoint of another configuration is refused, not silently mixed in.
    await assert.rejects(
      train(workspace, config({ name: 'split', seed: 99 }), { resume: true }),
      /another configuration/,
    );
    catalog.close();
  });

  it('refuses packages of another format, and broken ones, with clear messages', async () => {
    const { workspace, catalog } = await workspaceWithPatterns(0);
    const result = await train(
      workspace,
      config({
        phases: [{ epochs: 1, learningRate: 1e-3, schedule: 'constant' }],
      }),
    );
    const manifestPath = path.join(result.packageDir, 'model.json');
    const manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as Record<string, unknown>;
    writeFileSync(manifestPath, JSON.stringify({ ...manifest, format: '2.0' }));
    await assert.rejects(
      Predictor.load(result.packageDir),
      /format "2.0", but this pathotype reads format 1.x/,
    );
    writeFileSync(manifestPath, JSON.stringify(manifest));
    writeFileSync(path.join(result.packageDir, 'weights.bin'), Buffer.alloc(10));
    await assert.rejects(Predictor.load(result.packageDir), /truncated/);
    await assert.rejects(Predictor.load(tempDir()), /not a pathotype model package/);
    assert.ok(!existsSync(`${result.packageDir}.partial`));
    catalog.close();
  });

  it('merges overrides deeply, but lets a variant of another kind replace the base whole', () => {
    const base = {
      split: { kind: 'holdout', testFraction: 0.4, validationFraction: 0.2, seed: 1 },
      epochs: [1, 2],
    };
    assert.deepEqual(merge(base, { split: { seed: 7 }, epochs: [3] }), {
      split: { kind: 'holdout', testFraction: 0.4, validationFraction: 0.2, seed: 7 },
      epochs: [3],
    });
    assert.deepEqual(
      merge(base, { split: { kind: 'kfold', folds: 5, validationFraction: 0.2, seed: 1 } }).split,
      {
        kind: 'kfold',
        folds: 5,
        validationFraction: 0.2,
        seed: 1,
      },
    );
  });

  it('validates training configs against the schema', () => {
    assert.throws(
      () => resolveTrainConfig({ name: 'x', store: 's', architecture: 'resnet', phases: [{ epochs: 1 }] }),
      /architecture must be equal to one of the allowed values/,
    );
    assert.throws(
      () => resolveTrainConfig({ name: 'x', store: 's', architecture: 'vgg16', phases: [] }),
      /phases must NOT have fewer than 1 items/,
    );
    assert.throws(
      () =>
        resolveTrainConfig({
          name: 'x',
          store: 's',
          architecture: 'vgg16',
          phases: [{ epochs: 1 }],
          colour: 1,
        }),
      /unknown key 'colour'/,
    );
    const c = resolveTrainConfig({
      name: 'x',
      store: 's',
      architecture: 'vgg16',
      phases: [{ epochs: 2, learningRate: 0.1 }],
    });
    assert.equal(c.phases[0]?.optimizer, 'adam');
    assert.equal(c.batchSize, 32);
  });
});
