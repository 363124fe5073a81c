/** A small trained model package for server tests, made once per test file from generated patterns. */
import path from 'node:path';

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
