/**
 * ONNX export: every zoo architecture, written as an ONNX graph and run by ONNX Runtime, gives
 * the addon's outputs on 32 real patches to within 1e-4, and loads with the shapes it declares;
 * the same graph passes onnx.checker's full check (python3-onnx) and runs in OpenCV's dnn
 * (python3-opencv) with the same outputs, so it opens outside ONNX Runtime too.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { manualSeed, Network } from '../../src/engine/network.js';
import { OnnxSession } from '../../src/engine/onnx-runtime.js';
import { buildSpec, type Architecture } from '../../src/engine/zoo.js';
import { seededRandom } from '../../src/random.js';
import { networkToOnnx } from '../../src/engine/onnx-graph.js';
import type { OnnxSidecar } from '../../src/model/onnx-package.js';
import { updateManifest } from '../../src/model/package.js';
import { Predictor } from '../../src/predict/predictor.js';
import { tempDir } from '../fixtures.js';
import { slideScalePackage } from '../serve/model-fixture.js';
import { fieldsOf } from '../slide-fixtures.js';
import { absolutePathsIn, hasShared, lymphomaDir, runCli } from '../helpers.js';
import { realPatches } from '../real-patches.js';
import { openCvOutputs } from '../python.js';

/** Batch-norm statistics and biases away from their initial values, so that each is exercised. */
async function perturb(network: Network, seed: number): Promise<void> {
  const random = seededRandom(seed);
  const tensors = await network.exportTensors();
  for (const t of tensors) {
    const name = t.name;
    const data = Float32Array.from(t.data);
    for (let i = 0; i < data.length; i++) {
      if (name.endsWith('running_var') || (name.endsWith('weight') && t.shape.length === 1))
        data[i] = name.endsWith('running_var') ? 0.5 + random() : 0.2 + 0.5 * random();
      else if (name.endsWith('running_mean') || name.endsWith('bias')) data[i] = (random() - 0.5) * 0.2;
    }
    t.data = data;
  }
  await network.importTensors(tensors);
}

function maxDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let most = 0;
  for (let i = 0; i < a.length; i++) most = Math.max(most, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return most;
}

const cases: {
  architecture: Architecture;
  size: number;
  head: Parameters<typeof buildSpec>[1]['head'];
  depth?: 'res4';
}[] = [
  { architecture: 'vgg16', size: 64, head: { classes: 3, pooling: 'flatten', hidden: [64], dropout: 0.5 } },
  { architecture: 'mobilenet_v1', size: 64, head: { classes: 3, pooling: 'avg' } },
  { architecture: 'mobilenet_v2', size: 64, head: { classes: 3, pooling: 'avg' } },
  { architecture: 'resnet50', size: 64, head: { classes: 3, pooling: 'avg' } },
  { architecture: 'resnet50', size: 96, head: { classes: 3, pooling: 'avg' }, depth: 'res4' },
  { architecture: 'small_cnn', size: 32, head: { classes: 3, pooling: 'flatten', hidden: [16] } },
];

describe('ONNX export', { skip: !hasShared(lymphomaDir) && 'needs ../shared' }, () => {
  for (const { architecture, size, head, depth } of cases) {
    it(`${architecture}${depth ? ` (${depth})` : ''} at ${size} px: ONNX Runtime agrees with the addon to 1e-4 on 32 real patches`, async () => {
      manualSeed(1);
      const spec = buildSpec(architecture, { inputSize: size, head, ...(depth ? { depth } : {}) });
      const network = await Network.create(spec);
      await perturb(network, 2);
      const patches = await realPatches(32, size);
      const logits = await network.predict(patches, { raw: true });
      const probabilities = await network.predict(patches);
      const bytes = networkToOnnx(spec, await network.exportTensors(), {
        producerVersion: 'test',
        probabilities: true,
      });
      const session = await OnnxSession.open(bytes);
      try {
        assert.deepEqual(session.inputs, [
          { name: 'pixels', type: 'uint8', shape: ['batch', size, size, 3] },
        ]);
        assert.deepEqual(
          session.outputs.map((o) => [o.name, o.shape]),
          [
            ['logits', ['batch', 3]],
            ['probabilities', ['batch', 3]],
          ],
        );
        const out = await session.run(patches, [32, size, size, 3]);
        assert.deepEqual(out.get('logits')?.dims, [32, 3]);
        const logitScale = Math.max(1, ...Array.from(logits, Math.abs));
        const logitDiff = maxDifference(out.get('logits')?.data ?? new Float32Array(), logits) / logitScale;
        const probabilityDiff = maxDifference(
          out.get('probabilities')?.data ?? new Float32Array(),
          probabilities,
        );
        process.stdout.write(
          `# ${architecture}${depth ? ` ${depth}` : ''}: probabilities within ${probabilityDiff.toExponential(2)}, logits within ${logitDiff.toExponential(2)} of their scale ${logitScale.toFixed(1)}\n`,
        );
        assert.ok(probabilityDiff <= 1e-4, `probabilities differ by ${probabilityDiff}`);
        assert.ok(logitDiff <= 1e-4, `logits differ by ${logitDiff} of their scale`);
        const cv = await openCvOutputs(bytes, patches, [32, size, size], ['logits', 'probabilities']);
        const cvLogitDiff = maxDifference(cv.logits ?? new Float32Array(), logits) / logitScale;
        const cvProbabilityDiff = maxDifference(cv.probabilities ?? new Float32Array(), probabilities);
        process.stdout.write(
          `#   OpenCV dnn: probabilities within ${cvProbabilityDiff.toExponential(2)}, logits within ${cvLogitDiff.toExponential(2)} of their scale\n`,
        );
        assert.ok(cvProbabilityDiff <= 1e-4, `OpenCV's probabilities differ by ${cvProbabilityDiff}`);
        assert.ok(cvLogitDiff <= 1e-4, `OpenCV's logits differ by ${cvLogitDiff} of their scale`);
      } finally {
        await session.close();
      }
    });
  }

  it('refuses an opset outside the supported range and weights that do not fit the spec', async () => {
    const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: 3 } });
    const network = await Network.create(spec);
    const tensors = await network.exportTensors();
    assert.throws(() => networkToOnnx(spec, tensors, { producerVersion: 't', opset: 7 }), /opset/);
    assert.throws(
      () => networkToOnnx(spec, tensors.slice(1), { producerVersion: 't' }),
      (e: Error & { code?: string }) => e.code === 'ERR_ENGINE_INPUT' && /lack/.test(e.message),
    );
    await assert.rejects(
      OnnxSession.open(new Uint8Array([1, 2, 3, 4])),
      (e: Error & { code?: string }) => e.code === 'ERR_ONNX',
    );
  });

  it('`export --format onnx` writes the graph and its sidecar, checked on real patches, in either input layout', async () => {
    const { modelDir } = await slideScalePackage();
    await updateManifest(modelDir, (m) => ({
      ...m,
      calibration: { temperature: 1.5, threshold: 0.6, target: 0.9 },
    }));
    const dir = tempDir();
    const images = fieldsOf('CLL', 1).concat(fieldsOf('MCL', 1));
    const predictor = await Predictor.load(modelDir);
    const { image } = await predictor.preprocess({ source: images[0] ?? '' });
    const patch = image.patches.subarray(0, 32 * 32 * 3);
    const expected = await predictor.network.predict(patch);
    for (const layout of ['uint8-nhwc', 'float-nchw'] as const) {
      const out = path.join(dir, `${layout}.onnx`);
      const cli = await runCli([
        'export',
        modelDir,
        '--format',
        'onnx',
        '--out',
        out,
        '--input',
        layout,
        '--opset',
        '13',
        '--check-images',
        ...images,
      ]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /checked in ONNX Runtime on 32 real patches: probabilities within/);
      const sidecar = JSON.parse(readFileSync(path.join(dir, `${layout}.json`), 'utf8')) as OnnxSidecar;
      assert.equal(sidecar.format, 'pathotype-onnx/1');
      assert.deepEqual(sidecar.classes, predictor.classes);
      assert.deepEqual(sidecar.patch, { size: 32, stride: 32, mpp: 0.32 / 0.3005, targetScale: 0.3005 });
      assert.deepEqual(sidecar.calibration, { temperature: 1.5, threshold: 0.6, target: 0.9 });
      assert.equal(sidecar.vote, predictor.manifest.vote);
      assert.equal(sidecar.onnx.opset, 13);
      assert.equal(sidecar.onnx.sha256, createHash('sha256').update(readFileSync(out)).digest('hex'));
      // Everything between an image file and the answer, for a reimplementation (predict_onnx.py).
      const reproduce = sidecar.reproduce as {
        verdict: { rule: string; temperature: number; threshold: number };
        checks: { code: string }[];
        grid: { partial: string };
      };
      assert.deepEqual([reproduce.verdict.temperature, reproduce.verdict.threshold], [1.5, 0.6]);
      assert.ok(reproduce.checks.some((c) => c.code === 'ERR_UPSAMPLING'));
      assert.match(reproduce.grid.partial, /not analysed/);
      assert.deepEqual(absolutePathsIn(sidecar), [], 'no path of this machine in the sidecar');
      const session = await OnnxSession.open(out);
      const input =
        layout === 'uint8-nhwc'
          ? patch
          : Float32Array.from(
              { length: 3 * 32 * 32 },
              (_, i) => patch[(i % 1024) * 3 + Math.floor(i / 1024)] ?? 0,
            );
      const result = await session.run(input, layout === 'uint8-nhwc' ? [1, 32, 32, 3] : [1, 3, 32, 32]);
      await session.close();
      const got = result.get('probabilities')?.data ?? new Float32Array();
      assert.ok(maxDifference(got, expected) <= 1e-4, layout);
    }
  });
});
