/** A small untrained model at a given scale, for tests where what it answers does not matter. */
import { Network } from '../src/engine/network.js';
import { buildSpec } from '../src/engine/zoo.js';
import { PACKAGE_FORMAT, type ModelManifest } from '../src/model/package.js';
import { Predictor } from '../src/predict/predictor.js';

/** A small CNN with random weights: 32x32 patches, stride 32, at `targetScale`, mean vote. */
export async function modelAtScale(
  targetScale: number,
  calibration?: ModelManifest['calibration'],
): Promise<Predictor> {
  const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: 3 } });
  const manifest = {
    format: PACKAGE_FORMAT,
    name: 'at-scale',
    version: 1,
    spec,
    classes: ['CLL', 'FL', 'MCL'],
    preprocess: {
      normaliser: { method: 'none' },
      targetScale,
      tiles: { patchSize: 32, stride: 32 },
      background: { enabled: false, brightness: 220, maxFraction: 0.5 },
    },
    vote: 'mean',
    ...(calibration ? { calibration } : {}),
  } as unknown as ModelManifest;
  return Predictor.fromNetwork(manifest, await Network.create(spec));
}
