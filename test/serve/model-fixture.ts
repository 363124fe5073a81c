/** A small trained model package for server tests, made once per test file from generated patterns. */
import path from 'node:path';

import { Catalog } from '../../src/data/catalog.js';
import { parseGroupRule } from '../../src/data/grouping.js';
import { importImages } from '../../src/data/import.js';
import { prepare } from '../../src/data/prepare.js';
import { createSplit } from '../../src/data/split.js';
import { workspaceAt } from '../../src/data/workspace.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { tempDir, writePatternDataset } from '../fixtures.js';

export async function trainedPackage(): Promise<{ modelDir: string; dataDir: string; images: string }> {
  const images = tempDir();
  await writePatternDataset(images, 8);
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, images, { groupBy: parseGroupRule('none') });
  createSplit(catalog, 'default', { kind: 'holdout', testFraction: 0.25, validationFraction: 0, seed: 1 });
  await prepare(catalog, workspace, {
    name: 'p',
    split: 'default',
    normalisation: { method: 'none' },
    targetScale: null,
    tiles: { size: 24, stride: 12 },
  });
  const result = await train(
    workspace,
    resolveTrainConfig({
      name: 'served',
      store: 'p',
      architecture: 'small_cnn',
      phases: [{ epochs: 3, learningRate: 3e-3 }],
      batchSize: 16,
      threads: 2,
    }),
  );
  catalog.close();
  return { modelDir: result.packageDir, dataDir: path.join(tempDir(), 'serve'), images };
}
