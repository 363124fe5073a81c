/**
 * One run of `bench slide` in a fresh process, so its peak RSS is the slide path's: a small CNN
 * (random weights: speed and memory do not depend on them) at `modelScale` level-0 pixels per
 * model pixel, the slide predicted, then the same tiles read into memory and predicted alone.
 */
import { statSync } from 'node:fs';

import { Network } from '../engine/network.js';
import { Predictor } from '../predict/predictor.js';
import { predictSlide } from '../predict/slide-predictor.js';
import { benchSlideManifest, tilesInMemory } from './slide-model.js';

const [file = '', scaleArg = '4'] = process.argv.slice(2);
const manifest = benchSlideManifest(Number(scaleArg));
const spec = manifest.spec;
const { patchSize } = manifest.preprocess.tiles;
const predictor = Predictor.fromNetwork(manifest, await Network.create(spec), { batchSize: 256 });

// Warm-up: oneDNN makes its kernels on the first batches; neither measured path pays for that.
await predictor.predictPatches(new Uint8Array(256 * patchSize * patchSize * 3));
const started = performance.now();
const prediction = await predictSlide(predictor, file);
const slideSeconds = (performance.now() - started) / 1000;
const peakAfterSlide = process.resourceUsage().maxRSS / 1024;

// The same tiles, read into memory first (at the level the slide path read, resampled alike).
const count = prediction.tiles.length;
const patches = await tilesInMemory(
  file,
  prediction.tiling.level,
  prediction.tiles,
  prediction.tiling.size,
  patchSize,
);
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
