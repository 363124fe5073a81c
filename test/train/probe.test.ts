import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { PatchStore } from '../../src/prepare/patch-store.js';
import { Network } from '../../src/engine/network.js';
import { loadPretrained, readPretrained } from '../../src/engine/weights/load.js';
import { evaluateModel } from '../../src/evaluate/evaluate.js';
import { readManifest } from '../../src/model/package.js';
import { Predictor } from '../../src/predict/predictor.js';
import { softmax } from '../../src/predict/vote.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { fitLogistic, linearScores } from '../../src/train/logistic.js';
import { featureSpec } from '../../src/engine/zoo.js';
import { train } from '../../src/train/trainer.js';
import { seededRandom } from '../../src/random.js';
import { hasShared, weightsDir } from '../helpers.js';
import { patternWorkspace } from '../fixtures.js';

const mobilenet = path.join(weightsDir, 'mobilenet_v1_0.25_224_imagenet_tfjs');

describe('the logistic-regression head', () => {
  it('separates separable classes, with more features than samples too, and folds its scaling in', () => {
    const random = seededRandom(5);
    for (const dims of [4, 300]) {
      const rows = 60;
      const x = new Float64Array(rows * dims);
      const labels = new Int32Array(rows);
      for (let r = 0; r < rows; r++) {
        labels[r] = r % 3;
        // Feature k carries class k, on a scale and offset of its own; the rest is noise.
        for (let d = 0; d < dims; d++)
          x[r * dims + d] = 100 + 50 * d + (random() - 0.5) * 3 + (d === labels[r] ? 4 : 0);
      }
      const model = fitLogistic(x, labels, 3, { l2: 0.01, iterations: 300 });
      const scores = linearScores(model, x);
      let right = 0;
      for (let r = 0; r < rows; r++) {
        const row = [0, 1, 2].map((c) => scores[r * 3 + c] ?? 0);
        if (row.indexOf(Math.max(...row)) === labels[r]) right++;
      }
      assert.ok(right >= rows - 2, `${dims} features: ${right} of ${rows} right`);
    }
  });
});

describe('the frozen-feature probe recipe', () => {
  it(
    'fits a head on pooled ImageNet features in seconds, caches them, and the package votes as the head on mean features',
    { skip: !hasShared(weightsDir) && 'needs ../shared/weights' },
    async () => {
      const { workspace, catalog } = await patternWorkspace(10, {
        testFraction: 0.3,
        validationFraction: 0,
        seed: 2,
      });
      const config = resolveTrainConfig({
        name: 'probe',
        store: 'patterns',
        architecture: 'mobilenet_v1',
        alpha: 0.25,
        method: 'probe',
        probe: { l2: 0.01, views: 2 },
        augment: { stain: { hedScale: 0.05, brightness: 0.05 } },
        pretrained: mobilenet,
        vote: 'logit',
        threads: 2,
      });
      const first = await train(workspace, config);
      const manifest = readManifest(first.packageDir);
      const probe = manifest.training.probe as { images: number; rows: number; dims: number };
      assert.equal(probe.rows, probe.images * 2, 'one row per image and view');
      assert.equal(probe.dims, 256, 'MobileNet 0.25 pools 256 features');
      assert.equal(manifest.vote, 'logit');
      assert.deepEqual(manifest.history, [], 'no epochs');

      // The second fit finds every image's features in the cache and fits the same head.
      const again = await train(workspace, config);
      assert.equal(again.manifest.version, 2);
      const weights = (dir: string): Promise<Float32Array | undefined> =>
        import('../../src/model/tensors-file.js').then(
          async (m) =>
            (await m.readTensors(path.join(dir, 'weights'))).find((t) => t.name === 'predictions.weight')
              ?.data,
        );
      assert.deepEqual(await weights(again.packageDir), await weights(first.packageDir));

      const evaluation = await evaluateModel(catalog, workspace, first.packageDir);
      assert.ok(
        evaluation.report.image.accuracy >= 0.6,
        `image accuracy ${evaluation.report.image.accuracy}`,
      );

      // The 'logit' vote of the packaged network equals the head applied to the image's mean
      // pooled features: the model is exactly what was fitted.
      const store = PatchStore.open(path.join(workspace.patchesDir, 'patterns'));
      try {
        const image = store.images.find((i) => i.partition === 'test');
        assert.ok(image);
        const { patches } = await store.read(store.patchesOf(image.imageId));
        const features = await Network.create(featureSpec(manifest.spec));
        await loadPretrained(features, await readPretrained(mobilenet), mobilenet);
        const f = await features.predict(patches, { raw: true });
        const count = f.length / 256;
        const mean = new Float64Array(256);
        for (let p = 0; p < count; p++)
          for (let d = 0; d < 256; d++) mean[d] = (mean[d] ?? 0) + (f[p * 256 + d] ?? 0) / count;
        const tensors = await import('../../src/model/tensors-file.js').then((m) =>
          m.readTensors(path.join(first.packageDir, 'weights')),
        );
        const w = tensors.find((t) => t.name === 'predictions.weight')?.data ?? new Float32Array();
        const b = tensors.find((t) => t.name === 'predictions.bias')?.data ?? new Float32Array();
        const logits = [0, 1, 2].map((c) => {
          let s = b[c] ?? 0;
          for (let d = 0; d < 256; d++) s += (w[c * 256 + d] ?? 0) * (mean[d] ?? 0);
          return s;
        });
        const expected = softmax(logits);
        const predictor = await Predictor.load(first.packageDir);
        const [prediction] = await predictor.predictImages([
          { source: catalog.images().find((i) => i.id === image.imageId)?.path ?? '' },
        ]);
        assert.ok(prediction);
        manifest.classes.forEach((c, k) =>
          assert.ok(
            Math.abs((prediction.probabilities[c] ?? 0) - (expected[k] ?? 0)) < 2e-3,
            `${c}: ${prediction.probabilities[c]} vs ${expected[k]}`,
          ),
        );
        assert.equal(prediction.status, 'answered', 'no calibration: every result is an answer');
      } finally {
        await store.close();
      }
      catalog.close();
    },
  );
});
