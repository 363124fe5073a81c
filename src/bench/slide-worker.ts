/**
 * One run of `bench slide` in a fresh process, so its peak RSS is the slide path's: a small CNN
 * (random weights: speed and memory do not depend on them) at `modelScale` level-0 pixels per
 * model pixel, the slide predicted, then the same tiles read into memory and predicted alone.
 */
import { statSync } from 'node:fs';

import { Slide } from '../slide/slide.js';
import { Network } from '../engine/network.js';
import { buildSpec } from '../engine/zoo.js';
import { PACKAGE_FORMAT, type ModelManifest } from '../model/package.js';
import { Predictor } from '../predict/predictor.js';
import { predictSlide } from '../predict/slide-predictor.js';

const [file = '', scaleArg = '4'] = process.argv.slice(2);
const modelScale = Number(scaleArg);
const patchSize = 32;
const spec = buildSpec('small_cnn', { inputSize: patchSize, head: { classes: 3 } });
const manifest = {
  format: PACKAGE_FORMAT,
  name: 'bench-slide',
  version: 1,
  spec,
  classes: ['CLL', 'FL', 'MCL'],
  preprocess: {
    normaliser: { method: 'none' },
    // The slide is at the 0.3x copy's scale; the model sees it modelScale times coarser.
    targetScale: 0.3005 / modelScale,
    tiles: { patchSize, stride: patchSize },
    background: { enabled: false, brightness: 220, maxFraction: 0.5 },
  },
  vote: 'mean',
} as unknown as ModelManifest;
const predictor = Predictor.fromNetwork(manifest, await Network.create(spec), { batchSize: 256 });

// Warm-up: oneDNN makes its kernels on the first batches; neither measured path pays for that.
await predictor.predictPatches(new Uint8Array(256 * patchSize * patchSize * 3));
const started = performance.now();
const prediction = await predictSlide(predictor, file);
const slideSeconds = (performance.now() - started) / 1000;
const peakAfterSlide = process.resourceUsage().maxRSS / 1024;

// The same tiles, read into memory first (at the level the slide path read, resampled alike).
const slide = await Slide.open(file);
const level = prediction.tiling.level;
const ds = slide.info.levels[level]?.downsample ?? 1;
const count = prediction.tiles.length;
const bytes = patchSize * patchSize * 3;
const patches = new Uint8Array(count * bytes);
const side = Math.round(prediction.tiling.size / ds);
for (const [k, tile] of prediction.tiles.entries()) {
  const region = await slide.readRegion({ x: tile.x, y: tile.y, level, width: side, height: side });
  if (side === patchSize) patches.set(region.data, k * bytes);
}
await slide.close();
const predictorStarted = performance.now();
await predictor.predictPatches(patches);
const predictorSeconds = (performance.now() - predictorStarted) / 1000;

process.stdout.write(
  `${JSON.stringify({
    slide: {
      file,
      width: prediction.slide.width,
      height: prediction.slide.height,
      bytes: statSync(file).size,
      levels: prediction.slide.levels.length,
    },
    tiles: count,
    answered: prediction.result.patches,
    slideSeconds,
    tilesPerSecond: count / slideSeconds,
    predictorSeconds,
    predictorTilesPerSecond: count / predictorSeconds,
    ratio: predictorSeconds / slideSeconds,
    timings: prediction.timings,
    peakRssMb: peakAfterSlide,
  })}\n`,
);
