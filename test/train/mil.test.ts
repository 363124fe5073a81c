import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Network } from '../../src/engine/network.js';
import { loadPretrained, readPretrained } from '../../src/engine/weights/load.js';
import { evaluateModel } from '../../src/evaluate/evaluate.js';
import { architectureOf, loadPackageNetwork, readManifest } from '../../src/model/package.js';
import { exportPackageOnnx, type OnnxSidecar } from '../../src/model/onnx-package.js';
import { OnnxSession } from '../../src/engine/onnx-runtime.js';
import { softmax } from '../../src/predict/vote.js';
import { Predictor } from '../../src/predict/predictor.js';
import { PatchStore } from '../../src/prepare/patch-store.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { hasShared, weightsDir } from '../helpers.js';
import { patternWorkspace } from '../fixtures.js';

const mobilenet = path.join(weightsDir, 'mobilenet_v1_0.25_224_imagenet_tfjs');

describe('the multiple-instance (attention pooling) recipe', () => {
  it(
    'trains a gated-attention head on bags of cached patch features, and the package answers as the head on the whole bag',
    { skip: !hasShared(weightsDir) && 'needs ../shared/weights' },
    async () => {
      const { workspace, catalog } = await patternWorkspace(10, {
        testFraction: 0.3,
        validationFraction: 0,
        seed: 2,
      });
      const recipe = (pooling: 'attention' | 'mean') =>
        resolveTrainConfig({
          name: `mil-${pooling}`,
          store: 'patterns',
          architecture: 'mobilenet_v1',
          alpha: 0.25,
          method: 'mil',
          mil: { pooling, projection: 32, attention: 16, epochs: 15, learningRate: 1e-3 },
          pretrained: mobilenet,
          threads: 2,
        });
      const trained = await train(workspace, recipe('attention'));
      const manifest = readManifest(trained.packageDir);
      assert.equal(manifest.vote, 'attention');
      assert.equal(manifest.mil?.pooling, 'attention');
      assert.equal(manifest.spec.classes, 256, 'the per-patch network is the base: 256 features');
      assert.match(architectureOf(manifest), /^mobilenet_v1, attention pooling \(MIL\)$/);
      const mil = manifest.training.mil as { images: number; bags: number; dims: number };
      assert.equal(mil.bags, mil.images);

      const evaluation = await evaluateModel(catalog, workspace, trained.packageDir);
      assert.ok(
        evaluation.report.image.accuracy >= 0.6,
        `image accuracy ${evaluation.report.image.accuracy}`,
      );
      assert.match(
        readFileSync(evaluation.html, 'utf8'),
        /predicted \w+ \(attention\)/,
        "the report's attention maps",
      );

      // The predictor's answer is the head run on the image's whole bag of patch features.
      const store = PatchStore.open(path.join(workspace.patchesDir, 'patterns'));
      try {
        const image = store.images.find((i) => i.partition === 'test');
        assert.ok(image);
        const { patches } = await store.read(store.patchesOf(image.imageId));
        const base = await Network.create(manifest.spec);
        await loadPretrained(base, await readPretrained(mobilenet), mobilenet);
        const features = await base.predict(patches, { raw: true });
        const { milHead } = await loadPackageNetwork(trained.packageDir);
        assert.ok(milHead);
        const expected = await milHead.predict(features);
        const predictor = await Predictor.load(trained.packageDir, { bf16: false });
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
        const weights = prediction.grid.attention;
        assert.ok(weights, 'the grid carries each patch its attention weight');
        assert.equal(weights.length, prediction.grid.cells.length);
        assert.ok(Math.abs(weights.reduce((a, b) => a + b, 0) - 1) < 1e-3, 'the weights sum to 1');
        await predictor.close();

        // Out to ONNX: each patch's logits and attention score; pooled as the sidecar says, the package's answer.
        const onnxFile = path.join(workspace.root, 'mil.onnx');
        const exported = await exportPackageOnnx(trained.packageDir, onnxFile, { patches });
        assert.ok((exported.check.maxAttentionDifference ?? 1) <= 1e-4, JSON.stringify(exported.check));
        const sidecar = JSON.parse(readFileSync(exported.sidecar, 'utf8')) as OnnxSidecar;
        assert.equal(sidecar.vote, 'attention');
        assert.equal(sidecar.outputs.attention, 'attention');
        assert.equal(sidecar.pooling?.method, 'attention');
        const session = await OnnxSession.open(readFileSync(onnxFile));
        const count = patches.length / (store.patchSize * store.patchSize * 3);
        const graph = await session.run(patches, [count, store.patchSize, store.patchSize, 3]);
        await session.close();
        const logits = graph.get('logits')?.data ?? new Float32Array();
        const scores = Array.from(graph.get('attention')?.data ?? []);
        const pooled = softmax(
          manifest.classes.map((_, c) =>
            softmax(scores).reduce(
              (sum, w, i) => sum + w * (logits[i * manifest.classes.length + c] ?? 0),
              0,
            ),
          ),
        );
        pooled.forEach((p, k) =>
          assert.ok(Math.abs(p - (expected[k] ?? 0)) < 1e-3, `class ${k}: ${p} vs ${expected[k]}`),
        );
      } finally {
        await store.close();
      }

      // Mean pooling on the same features answers by the mean log-probability, with no weights to show.
      const mean = await train(workspace, recipe('mean'));
      assert.equal(mean.manifest.vote, 'logit');
      const meanPredictor = await Predictor.load(mean.packageDir);
      const [plain] = await meanPredictor.predictImages([{ source: catalog.images()[0]?.path ?? '' }]);
      assert.equal(plain?.grid.attention, undefined);
      await meanPredictor.close();

      catalog.close();
    },
  );

  it('refuses a MIL recipe it cannot run, with the reason', async () => {
    const base = { name: 'mil', store: 'patterns', architecture: 'mobilenet_v1', method: 'mil' } as const;
    assert.throws(() => resolveTrainConfig({ ...base, mil: { pooling: 'max' } }), {
      code: 'ERR_CONFIG',
      message: /pooling/,
    });
    assert.throws(() => resolveTrainConfig({ ...base, mil: { epochs: 0 } }), {
      code: 'ERR_CONFIG',
      message: /epochs/,
    });
    assert.throws(() => resolveTrainConfig({ ...base, mil: { attention: 64, heads: 2 } }), {
      code: 'ERR_CONFIG',
      message: /heads/,
    });
    const { workspace, catalog } = await patternWorkspace(4, {
      testFraction: 0.25,
      validationFraction: 0,
      seed: 3,
    });
    await assert.rejects(train(workspace, resolveTrainConfig({ ...base, pretrained: null, threads: 2 })), {
      code: 'ERR_CONFIG',
      message: /method: mil keeps its base frozen, so it needs the pretrained weights/,
    });
    catalog.close();
  });
});
