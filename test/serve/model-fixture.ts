/** A small trained model package for server tests, made once per test file from generated patterns. */
import path from 'node:path';

import { Network } from '../../src/engine/network.js';
import { buildSpec } from '../../src/engine/zoo.js';
import { readManifest, writePackage } from '../../src/model/package.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { patternWorkspace, tempDir } from '../fixtures.js';

export async function trainedPackage(): Promise<{ modelDir: string; dataDir: string; images: string }> {
  const { workspace, catalog, root } = await patternWorkspace(8, {
    testFraction: 0.25,
    validationFraction: 0,
    seed: 1,
  });
  const result = await train(
    workspace,
    resolveTrainConfig({
      name: 'served',
      store: 'patterns',
      architecture: 'small_cnn',
      phases: [{ epochs: 3, learningRate: 3e-3 }],
      batchSize: 16,
      threads: 2,
    }),
  );
  catalog.close();
  return { modelDir: result.packageDir, dataDir: path.join(tempDir(), 'serve'), images: root };
}

/**
 * A package at the 0.3x development copy's scale (32x32 patches, stride 32) for slide tests: the
 * served pattern model's manifest with a small CNN of random weights in its place.
 */
export async function slideScalePackage(): Promise<{ modelDir: string; dataDir: string }> {
  const { modelDir } = await trainedPackage();
  const manifest = readManifest(modelDir);
  const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: manifest.classes.length } });
  const network = await Network.create(spec);
  const dir = path.join(tempDir(), 'slide-model');
  await writePackage(
    dir,
    {
      ...manifest,
      name: 'slides',
      spec,
      preprocess: { ...manifest.preprocess, targetScale: 0.3005, tiles: { patchSize: 32, stride: 32 } },
      // Another network: the pattern model's reference of its training images does not describe it.
      reference: undefined,
    },
    await network.exportTensors(),
  );
  return { modelDir: dir, dataDir: path.join(tempDir(), 'serve') };
}
