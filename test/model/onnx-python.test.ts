/**
 * The exported model outside pathotype: integrations/python/predict_onnx.py, reading only the
 * .onnx and its sidecar and running the graph in OpenCV's dnn, gives `pathotype predict`'s
 * answers (fp32) within 1e-3 on real images at three scales (0.3x PNG; full-resolution JPEG, PNG
 * and WebP; half-resolution PNG), refuses what predict refuses with the same code, and does so for
 * the main preset's network (ResNet50 to res4, 96 px patches at 0.3x, logit vote, calibrated to
 * never answer), a multiple-instance package (attention vote) and a majority-vote small CNN.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { manualSeed, Network } from '../../src/engine/network.js';
import { buildSpec } from '../../src/engine/zoo.js';
import { PACKAGE_FORMAT, writePackage, type ModelManifest } from '../../src/model/package.js';
import { heImage, tempDir, writeImage } from '../fixtures.js';
import { fullresSampleDir, halfresSampleDir, hasShared, lymphomaDir, repoRoot, runCli } from '../helpers.js';
import { milPackageFrom } from '../model-at-scale.js';
import { pythonWith, runPython } from '../python.js';

const SCRIPT = path.join(repoRoot, 'integrations/python/predict_onnx.py');

/** A package with the main preset's geometry, vote and calibration around `spec`'s random weights. */
async function packageOf(
  spec: ReturnType<typeof buildSpec>,
  patch: { patchSize: number; stride: number },
  vote: ModelManifest['vote'],
  calibration?: ModelManifest['calibration'],
): Promise<string> {
  manualSeed(3);
  const network = await Network.create(spec);
  const dir = path.join(tempDir(), spec.name);
  const manifest: ModelManifest = {
    format: PACKAGE_FORMAT,
    name: `python-${spec.name}`,
    version: 1,
    createdAt: new Date(0).toISOString(),
    software: { pathotype: 'test' },
    spec,
    classes: ['CLL', 'FL', 'MCL'],
    preprocess: {
      normaliser: { method: 'none' },
      targetScale: 0.3,
      mpp: 0.32 / 0.3,
      tiles: patch,
      background: { enabled: false, brightness: 220, maxFraction: 0.5 },
    },
    vote,
    training: {},
    data: { store: 'none', split: null, fingerprint: '', images: 0, patches: 0 },
    history: [],
    metrics: {},
    ...(calibration ? { calibration } : {}),
  };
  await writePackage(dir, manifest, await network.exportTensors());
  return dir;
}

interface Answer {
  name: string;
  status: string;
  code?: string;
  probabilities?: Record<string, number>;
  meanProbabilities?: Record<string, number>;
}

/** predict's and the script's answers on the same images; asserts they agree and returns the largest difference. */
async function agreement(modelDir: string, images: readonly string[]): Promise<number> {
  const python = await pythonWith(['cv2', 'numpy', 'PIL']);
  const onnx = path.join(tempDir(), 'model.onnx');
  const exported = await runCli(['export', modelDir, '--out', onnx]);
  assert.equal(exported.code, 0, exported.stderr);
  const ours = await runCli(['predict', '--model', modelDir, '--format', 'json', '--no-bf16', ...images]);
  const theirs = await runPython(python, [SCRIPT, onnx, ...images]);
  assert.equal(theirs.code, ours.code, theirs.stderr);
  const a = (JSON.parse(ours.stdout) as { predictions: Answer[] }).predictions;
  const b = (JSON.parse(theirs.stdout) as { predictions: Answer[] }).predictions;
  assert.deepEqual(
    b.map((p) => [p.name, p.status, p.code]),
    a.map((p) => [p.name, p.status, p.code]),
  );
  let most = 0;
  for (const [k, p] of a.entries()) {
    const q = b[k];
    for (const key of ['probabilities', 'meanProbabilities'] as const)
      for (const [c, v] of Object.entries(p[key] ?? {}))
        most = Math.max(most, Math.abs(v - (q?.[key]?.[c] ?? NaN)));
  }
  assert.ok(most <= 1e-3, `the script's probabilities differ from predict's by ${most}`);
  return most;
}

const sample = (dir: string, ...names: string[]): string[] => names.map((n) => path.join(dir, n));

describe(
  'integrations/python/predict_onnx.py',
  { skip: !hasShared(fullresSampleDir) && 'needs ../shared' },
  () => {
    it("gives predict's answers within 1e-3 with the main preset's network, and refuses what it refuses", async () => {
      const spec = buildSpec('resnet50', {
        inputSize: 96,
        depth: 'res4',
        head: { classes: 3, pooling: 'avg' },
      });
      const modelDir = await packageOf(spec, { patchSize: 96, stride: 48 }, 'logit', {
        temperature: 9.025,
        threshold: 1.01,
        target: 0.95,
      });
      const tiny = path.join(tempDir(), 'tiny.png');
      await writeImage(tiny, heImage(20, 15, 1));
      const images = [
        ...sample(
          lymphomaDir,
          'CLL/sj-03-2810_001.png',
          'FL/sj-05-1881-R1_001.png',
          'MCL/sj-04-4525-R4_001.png',
        ),
        ...sample(
          fullresSampleDir,
          'CLL/sj-03-2810_002.jpg',
          'CLL/sj-03-476_006.png',
          'CLL/sj-03-852-R2_002.webp',
        ),
        ...sample(halfresSampleDir, 'FL/sj-05-4881-R3_003.png'),
        tiny,
      ];
      const most = await agreement(modelDir, images);
      process.stdout.write(`# ResNet50 res4, logit vote: largest difference ${most}\n`);
    });

    it('agrees on a multiple-instance (attention) package and a majority-vote small CNN', async () => {
      const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: 3 } });
      const majority = await packageOf(spec, { patchSize: 32, stride: 32 }, 'majority');
      const mil = await milPackageFrom(majority, path.join(tempDir(), 'mil'));
      const images = [
        ...sample(lymphomaDir, 'CLL/sj-03-2810_001.png', 'MCL/sj-04-4525-R4_001.png'),
        ...sample(fullresSampleDir, 'FL/sj-05-4881-R3_003.jpg'),
      ];
      for (const dir of [majority, mil]) {
        const most = await agreement(dir, images);
        process.stdout.write(`# ${path.basename(dir)}: largest difference ${most}\n`);
      }
    });
  },
);
