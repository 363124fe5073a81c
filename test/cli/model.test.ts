import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { PatchStore } from '../../src/prepare/patch-store.js';
import { buildServer } from '../../src/serve/app.js';
import { absolutePathsIn, repoRoot, runCli, type CliResult } from '../helpers.js';
import { tempDir, writeFile, writePatternDataset } from '../fixtures.js';

const cli = path.join(repoRoot, 'bin/pathotype.js');

async function pathotype(workspace: string, ...args: string[]): Promise<CliResult> {
  return runCli(['-w', workspace, ...args]);
}

const quickConfig = {
  groupBy: 'none',
  split: { kind: 'holdout', testFraction: 0.25, validationFraction: 0.25, seed: 3 },
  prepare: { normalisation: 'none', targetScale: null, patchSize: 24, stride: 12 },
  train: {
    phases: [{ epochs: 3, optimizer: 'adam', learningRate: 0.003 }],
    batchSize: 16,
    head: { hidden: [16], dropout: 0.1 },
    bf16: false,
  },
};

/** A pattern data set, a workspace and the arguments of a small, fast `run` over them. */
async function quickRun(
  perClass: number,
  name: string,
): Promise<{ data: string; ws: string; args: string[] }> {
  const data = tempDir();
  await writePatternDataset(data, perClass);
  const ws = path.join(tempDir(), 'ws');
  const config = writeFile(path.join(tempDir(), `${name}.json`), JSON.stringify(quickConfig));
  return {
    data,
    ws,
    args: ['run', '--preset', 'small-cnn', '--data', data, '--config', config, '--name', name],
  };
}

describe('pathotype run, train, evaluate and predict', () => {
  it('runs the whole workflow, then resumes it stage by stage', async () => {
    const { data, ws, args } = await quickRun(10, 'quick');
    const first = await pathotype(ws, ...args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stderr, /run: prepare: made \d+ patches/);
    assert.match(first.stdout, /quick \(finetune on small_cnn\): image accuracy \d+\.\d% \(majority vote\)/);
    assert.doesNotMatch(first.stdout, /final model/, 'a holdout run deploys its one model');
    const report = path.join(ws, 'models/quick/evaluation/report.html');
    assert.ok(existsSync(report));
    // Again without --data: the catalog as it is.
    const again = await pathotype(ws, ...args.filter((a) => a !== '--data' && a !== data));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /split 'quick' unchanged/);
    assert.match(again.stderr, /prepare: reused/);
    assert.match(again.stderr, /train: resumed after epoch 3/);
    const manifest = JSON.parse(readFileSync(path.join(ws, 'models/quick/model.json'), 'utf8')) as {
      version: number;
    };
    assert.equal(manifest.version, 1, 'a finished stage is not redone');

    // predict: JSON, CSV and heatmaps from the package alone.
    const images = [path.join(data, 'BLOB/0.png'), path.join(data, 'STRIPES/1.png')];
    const json = await pathotype(ws, 'predict', '--model', 'quick', '--format', 'json', ...images);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as {
      predictions: { predicted: string; voteShares: Record<string, number>; grid: { cells: unknown[] } }[];
    };
    assert.equal(parsed.predictions.length, 2);
    for (const p of parsed.predictions) {
      assert.ok(['BLOB', 'CHECKER', 'STRIPES'].includes(p.predicted));
      const total = Object.values(p.voteShares).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(total - 1) < 1e-6);
      assert.equal(p.grid.cells.length, 9);
    }
    const heatmaps = tempDir();
    const csv = await pathotype(
      ws,
      'predict',
      '--model',
      path.join(ws, 'models/quick'),
      '--format',
      'csv',
      '--heatmap',
      heatmaps,
      ...images,
    );
    assert.match(
      csv.stdout.split('\n')[0] ?? '',
      /^image,status,confidence,predicted,by_majority,by_mean,patches,votes_BLOB/,
    );
    const overlay = await sharp(path.join(heatmaps, '0.heatmap.png')).metadata();
    assert.deepEqual([overlay.format, overlay.width, overlay.height], ['png', 48, 48]);

    const evaluation = await pathotype(ws, 'evaluate', 'quick', '--json');
    assert.equal(evaluation.code, 0, evaluation.stderr);
    assert.ok((JSON.parse(evaluation.stdout) as { imageMajority: { n: number } }).imageMajority.n > 0);

    const bad = await pathotype(ws, 'predict', '--model', 'quick', path.join(data, 'missing.png'));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /not a readable image/);

    // The text line: the verdict as the portal writes it, vote shares under their name; --mpp.
    const field = images[0] ?? '';
    const text = await pathotype(ws, 'predict', '--model', 'quick', '--mpp', '0.64', field);
    assert.equal(text.code, 0, text.stderr);
    assert.match(
      text.stdout,
      /: (\w+|uncertain \(leans \w+\)), \d+\.\d% (calibrated confidence|confidence \(uncalibrated\)).*; vote shares BLOB/,
    );
    const scaled = await pathotype(
      ws,
      'predict',
      '--model',
      'quick',
      '--mpp',
      '0.64',
      '--format',
      'json',
      field,
    );
    assert.equal(
      (JSON.parse(scaled.stdout) as { predictions: { scale: number }[] }).predictions[0]?.scale,
      0.5,
    );
    const both = await pathotype(ws, 'predict', '--model', 'quick', '--mpp', '0.64', '--scale', '0.5', field);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /--mpp or --scale, not both/);
  });

  it('stops a run on images without patient ids unless --group-by none is given, and says why', async () => {
    const data = tempDir();
    await writePatternDataset(data, 3);
    const ws = path.join(tempDir(), 'ws');
    const imported = await pathotype(ws, 'data', 'import', data);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stderr, /every one of the 9 images is a group of its own/);
    const withoutGroups: Partial<typeof quickConfig> = { ...quickConfig };
    delete withoutGroups.groupBy;
    const config = writeFile(path.join(tempDir(), 'nogroups.json'), JSON.stringify(withoutGroups));
    const refused = await pathotype(ws, 'run', '--preset', 'small-cnn', '--config', config, '--name', 'leak');
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /cross-validation would split images, not patients/);
    assert.match(refused.stderr, /--group-by none/);
    assert.ok(!existsSync(path.join(ws, 'models/leak')), 'nothing trained');
  });

  it('cross-validates by case: k folds, every image predicted once by a model that never saw its case', async () => {
    const { data, ws, args: runArgs } = await quickRun(6, 'cv');
    const args = [...runArgs, '--folds', '3'];
    const first = await pathotype(ws, ...args, '--json');
    assert.equal(first.code, 0, first.stderr);
    const result = JSON.parse(first.stdout) as {
      runs: { name: string; fold: number }[];
      crossValidation: { json: string; imageAccuracy: number; folds: { images: number }[] };
    };
    assert.deepEqual(
      result.runs.map((r) => [r.name, r.fold]),
      [
        ['cv-fold1', 1],
        ['cv-fold2', 2],
        ['cv-fold3', 3],
      ],
    );
    const cv = JSON.parse(readFileSync(result.crossValidation.json, 'utf8')) as {
      imageMajority: { n: number; accuracy: number };
      images: { imageId: number; fold: number }[];
    };
    const ids = cv.images.map((i) => i.imageId);
    assert.equal(ids.length, 18, 'every image once');
    assert.equal(new Set(ids).size, 18, 'no image in two test folds');
    assert.equal(cv.imageMajority.n, 18);
    assert.equal(cv.imageMajority.accuracy, result.crossValidation.imageAccuracy);
    for (const fold of [1, 2, 3]) {
      // Each fold's model was trained on the other folds' images only.
      const model = JSON.parse(readFileSync(path.join(ws, `models/cv-fold${fold}/model.json`), 'utf8')) as {
        data: { split: string };
      };
      assert.equal(model.data.split, `cv-fold${fold}`);
      const store = PatchStore.open(path.join(ws, `patches/cv-fold${fold}`));
      try {
        const heldOut = cv.images.filter((i) => i.fold === fold).map((i) => i.imageId);
        const trainedOn = store.images.filter((i) => i.partition !== 'test').map((i) => i.imageId);
        assert.deepEqual(
          store.images.filter((i) => i.partition === 'test').map((i) => i.imageId),
          heldOut,
        );
        assert.ok(!trainedOn.some((id) => heldOut.includes(id)), 'no held-out image among the training ones');
      } finally {
        await store.close();
      }
    }
    const again = await pathotype(ws, ...args);
    assert.equal(again.code, 0, again.stderr);
    assert.equal((again.stderr.match(/prepare: reused/g) ?? []).length, 4, 'three folds and the final model');
    // The pattern images carry no patient ids: given --group-by none, every figure says what it is.
    assert.match(
      again.stdout,
      /3-fold cross-validation split by image \(every image its own group; not an estimate for new patients\): image accuracy \d+\.\d% \(95% CI \d+\.\d%-\d+\.\d%, majority vote\) over all 18 images/,
    );
    // The final model: trained on every image, carrying the CV figures and the calibration.
    const final = JSON.parse(readFileSync(path.join(ws, 'models/cv/model.json'), 'utf8')) as {
      data: { split: string; images: number };
      calibration: { temperature: number; threshold: number; target: number };
      metrics: {
        crossValidation: {
          imageAccuracy: number;
          folds: number;
          groups: number;
          splitByImage: boolean;
          estimate: string;
        };
      };
    };
    assert.equal(final.data.split, 'cv-all');
    assert.equal(final.data.images, 18);
    assert.equal(final.metrics.crossValidation.imageAccuracy, result.crossValidation.imageAccuracy);
    assert.deepEqual([final.metrics.crossValidation.folds, final.metrics.crossValidation.groups], [3, 18]);
    assert.ok(final.calibration.temperature > 0 && final.calibration.target === 0.95);
    assert.ok(existsSync(path.join(ws, 'runs/cv/cross-validation.html')));
    assert.equal(final.metrics.crossValidation.splitByImage, true);
    // Paths relative to the package (the report sits in the workspace's runs/), none of this machine.
    assert.deepEqual(absolutePathsIn(final), []);
    assert.equal(
      path.resolve(ws, 'models/cv', (final.metrics.crossValidation as { report?: string }).report ?? ''),
      path.join(ws, 'runs/cv/cross-validation.json'),
    );
    assert.equal(final.metrics.crossValidation.estimate, 'split by image: not an estimate for new patients');
    assert.match(
      readFileSync(path.join(ws, 'runs/cv/cross-validation.html'), 'utf8'),
      /split by image: not an estimate for new patients/,
    );
    const server = await buildServer({ modelDir: path.join(ws, 'models/cv'), dataDir: tempDir() });
    try {
      const [model] = (await server.app.inject('/api/v1/models')).json<{ estimate: string }[]>();
      assert.equal(model?.estimate, 'split by image: not an estimate for new patients');
      assert.deepEqual(absolutePathsIn(model), []);
      const page = (await server.app.inject('/')).body;
      assert.match(page, /split by image: not an estimate for new patients/);
      assert.doesNotMatch(page, /expected on new patients/);
    } finally {
      await server.app.close();
    }
    const predicted = await pathotype(
      ws,
      'predict',
      '--model',
      'cv',
      '--format',
      'json',
      path.join(data, 'BLOB/0.png'),
    );
    const answer = (JSON.parse(predicted.stdout) as { predictions: { status: string; threshold: number }[] })
      .predictions[0];
    assert.equal(answer?.threshold, final.calibration.threshold);
    assert.ok(answer?.status === 'answered' || answer?.status === 'uncertain');
  });

  it('continues a training killed with SIGKILL from its last checkpoint', async () => {
    const data = tempDir();
    await writePatternDataset(data, 8);
    const ws = path.join(tempDir(), 'ws');
    assert.equal((await pathotype(ws, 'data', 'import', data, '--group-by', 'none')).code, 0);
    assert.equal(
      (
        await pathotype(
          ws,
          'prepare',
          '--own-scale',
          '--patch-size',
          '24',
          '--stride',
          '12',
          '--normalisation',
          'none',
          '--name',
          'p',
        )
      ).code,
      0,
    );
    const config = writeFile(
      path.join(tempDir(), 'train.yaml'),
      [
        'name: killed',
        'store: p',
        'architecture: small_cnn',
        'phases:',
        '  - epochs: 40',
        '    learningRate: 0.001',
        'batchSize: 8',
        'bf16: false',
      ].join('\n'),
    );
    const child = spawn(process.execPath, [cli, '-w', ws, 'train', '--config', config], { stdio: 'ignore' });
    const state = path.join(ws, 'runs/killed/checkpoint/state.json');
    const exited = new Promise((resolve) => child.on('exit', resolve));
    try {
      const deadline = Date.now() + 120_000;
      while (!existsSync(state) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      assert.ok(existsSync(state), 'a checkpoint appeared');
    } finally {
      child.kill('SIGKILL');
      await exited;
    }
    const resumed = await pathotype(ws, 'train', '--config', config, '--resume', '--json');
    assert.equal(resumed.code, 0, resumed.stderr);
    const result = JSON.parse(resumed.stdout) as { resumedFrom: number; manifest: { history: unknown[] } };
    assert.ok(result.resumedFrom >= 1 && result.resumedFrom < 40, `resumed from ${result.resumedFrom}`);
    assert.equal(result.manifest.history.length, 40);
  });

  it('fails clearly without weights or network', async () => {
    const ws = path.join(tempDir(), 'ws');
    const offline = await pathotype(ws, 'weights', 'fetch', 'vgg16', '--url', 'http://127.0.0.1:9/vgg16.h5');
    assert.equal(offline.code, 1);
    assert.match(
      offline.stderr,
      /cannot reach any download address.*\n.*\n?.*MD5 6d6bbae143d832006294945121d1f1fc/s,
    );
    const unknown = await pathotype(ws, 'weights', 'fetch', 'resnet101');
    assert.match(unknown.stderr, /unknown weights 'resnet101'/);
    const listed = await pathotype(ws, 'weights', 'list');
    assert.match(listed.stdout, /vgg16/);
    const preset = await pathotype(ws, 'run', '--preset', 'nope');
    assert.match(preset.stderr, /unknown preset 'nope'/);
    const empty = await pathotype(ws, 'run', '--preset', 'small-cnn');
    assert.match(empty.stderr, /the catalog is empty/);
  });
});
