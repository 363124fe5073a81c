/** A small untrained model at a given scale, for tests where what it answers does not matter. */
import path from 'node:path';

import { milHeadSpec } from '../src/engine/mil-head.js';
import { manualSeed, Network } from '../src/engine/network.js';
import { buildSpec, featureSpec } from '../src/engine/zoo.js';
import {
  MIL_HEAD_FILE,
  PACKAGE_FORMAT,
  readManifest,
  writePackage,
  type ModelManifest,
} from '../src/model/package.js';
import { readTensors } from '../src/model/tensors-file.js';
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

/**
 * A multiple-instance package made from another package: its network without the classifier as
 * the per-patch base (its weights kept), and a gated-attention head of seeded random weights
 * (its scores sharpened).
 */
export async function milPackageFrom(modelDir: string, outDir: string): Promise<string> {
  const manifest = readManifest(modelDir);
  const base = featureSpec(manifest.spec);
  const network = await Network.create(base);
  await network.importTensors(await readTensors(path.join(modelDir, 'weights')), { strict: false });
  manualSeed(5);
  const head = milHeadSpec({
    features: base.classes,
    classes: manifest.classes.length,
    pooling: 'attention',
    projection: 16,
    attention: 8,
    dropout: 0,
  });
  const headNetwork = await Network.create(head);
  // Random scores differ little between patches of one image: sharpened, so that weights differ.
  const headTensors = (await headNetwork.exportTensors()).map((t) =>
    t.name === 'mil_attention_w.weight' ? { ...t, data: t.data.map((v) => v * 200) } : t,
  );
  const tensors = await network.exportTensors();
  await writePackage(
    outDir,
    {
      ...manifest,
      name: `${manifest.name}-mil`,
      spec: base,
      vote: 'attention',
      mil: { pooling: 'attention', head, file: MIL_HEAD_FILE },
      // Another network: the source's reference of its training images does not describe it.
      reference: undefined,
    },
    tensors,
    [],
    [{ name: MIL_HEAD_FILE, tensors: headTensors }],
  );
  return outDir;
}
