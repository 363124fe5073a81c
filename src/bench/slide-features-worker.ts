/**
 * One run of `bench slide --features` in a fresh process, so its peak RSS is the extraction's:
 * the benchmark model's base (its classifier cut) extracts the slide's bag into a throw-away
 * workspace (mask, reads, resampling, checks, features appended to the HDF5 file, the refused
 * tiles dropped), then the image path's feature pass (what a patch store's patches go through)
 * runs on the same tissue tiles already in memory, in the same process.
 */
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { SlideRecord } from '../acquire/catalog.js';
import { Network } from '../engine/network.js';
import { featureSpec } from '../engine/zoo.js';
import { slideTiles, tileOrigin } from '../predict/slide-tiles.js';
import { Slide } from '../slide/slide.js';
import { runFeatures, zooFeatures } from '../train/probe.js';
import { extractSlideBags } from '../train/slide-bags.js';
import { workspaceAt } from '../workspace.js';
import { benchSlideManifest, tilesInMemory, type BenchBase } from './slide-model.js';

const [file = '', scaleArg = '4', baseArg = 'small_cnn'] = process.argv.slice(2);
const { spec, preprocess } = benchSlideManifest(Number(scaleArg), baseArg as BenchBase);
const { patchSize } = preprocess.tiles;
const features = await zooFeatures(await Network.create(featureSpec(spec)), {
  pretrained: null,
  bf16: false,
  engine: 'addon',
});
const opened = await Slide.open(file);
const { info } = opened;
await opened.close();
const record: SlideRecord = {
  id: 1,
  path: file,
  patient: 'bench',
  label: 'CLL',
  mpp: info.mpp ?? 0.32 / 0.3005,
  width: info.width,
  height: info.height,
  vendor: info.vendor,
  fold: null,
  annotations: null,
  source: file,
  importedAt: new Date().toISOString(),
};
const root = mkdtempSync(path.join(os.tmpdir(), 'pathotype-bench-features-'));
try {
  // Warm-up: oneDNN makes its kernels on the first batches; neither measured path pays for that.
  await runFeatures(features.runner, false, features.dims, new Uint8Array(64 * patchSize ** 2 * 3), 64);
  const started = performance.now();
  const { bags, excluded } = await extractSlideBags({
    workspace: workspaceAt(root),
    slides: [record],
    classes: ['CLL', 'FL', 'MCL'],
    preprocess,
    features,
  });
  const extractSeconds = (performance.now() - started) / 1000;
  const peakRssMb = process.resourceUsage().maxRSS / 1024;
  const quality = bags[0]?.quality ?? excluded[0]?.quality;

  // The same tissue tiles, read into memory first, through the image path's feature pass.
  const slide = await Slide.open(file);
  const tiles = await slideTiles(slide, preprocess, { slideMpp: record.mpp }).finally(() => slide.close());
  const corners = tiles.kept.map(([col, row]) => {
    const [x, y] = tileOrigin(tiles.grid, col, row);
    return { x, y };
  });
  const patches = await tilesInMemory(file, tiles.grid.readLevel, corners, tiles.size0, patchSize);
  const memoryStarted = performance.now();
  await runFeatures(features.runner, false, features.dims, patches, corners.length);
  const memorySeconds = (performance.now() - memoryStarted) / 1000;
  const count = quality?.tiles ?? 0;
  process.stdout.write(
    `${JSON.stringify({
      slide: {
        file,
        width: info.width,
        height: info.height,
        bytes: statSync(file).size,
        levels: info.levels.length,
      },
      base: baseArg,
      tiles: count,
      usable: quality?.usable ?? 0,
      dims: features.dims,
      extractSeconds,
      extractTilesPerSecond: count / extractSeconds,
      memorySeconds,
      memoryTilesPerSecond: corners.length / memorySeconds,
      ratio: count / extractSeconds / (corners.length / memorySeconds),
      peakRssMb,
    })}\n`,
  );
} finally {
  await features.runner.close();
  rmSync(root, { recursive: true, force: true });
}
