/**
 * `pathotype bench slide`: whole-slide inference on a large generated slide (default about
 * 40,000 x 30,000 px: a mosaic of the development images written as a JPEG pyramidal TIFF),
 * measured in a fresh process: peak RSS, tiles per second through the slide path (mask, reads,
 * resampling, normalisation, inference), and the predictor alone on the same tiles already in
 * memory, in the same process.
 */
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

import { startJsonProcess } from '../io/json-process.js';
import type { BenchBase } from './slide-model.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const worker = path.join(here, 'slide-worker.js');
const featuresWorker = path.join(here, 'slide-features-worker.js');

export interface SlideBenchOptions {
  /** Development images folder (class folders of 417x312 fields). */
  images: string;
  /** Where the slide is written (kept for the next run). */
  slide: string;
  /** Cells across and down: 96 x 96 cells of 417 x 312 px make 40,032 x 29,952 px. */
  across: number;
  down: number;
  /** Level-0 pixels per model pixel: the model reads a coarser level than level 0. */
  modelScale: number;
  /** `--features`: the frozen base (bench/slide-model.ts); default the small CNN. */
  base?: BenchBase;
}

export interface SlideBenchResult {
  slide: {
    file: string;
    width: number;
    height: number;
    bytes: number;
    levels: number;
    buildSeconds: number | null;
  };
  tiles: number;
  /** The tissue tiles that pass the tile checks and vote in the slide's answer. */
  answered: number;
  slideSeconds: number;
  tilesPerSecond: number;
  predictorSeconds: number;
  predictorTilesPerSecond: number;
  /** Slide path throughput over the predictor's on the same tiles in memory. */
  ratio: number;
  timings: { maskMs: number; readMs: number; inferenceMs: number };
  peakRssMb: number;
}

/** Training's feature extraction on the slide against the image path's feature pass on the same tiles in memory. */
export interface SlideFeatureBenchResult {
  slide: SlideBenchResult['slide'];
  base: BenchBase;
  /** Tissue tiles run through the base; `usable`: those that pass the tile checks and stay in the bag. */
  tiles: number;
  usable: number;
  dims: number;
  extractSeconds: number;
  extractTilesPerSecond: number;
  memorySeconds: number;
  memoryTilesPerSecond: number;
  /** Extraction throughput over the image path's on the same tiles. */
  ratio: number;
  /** Peak RSS of the process once the slide is extracted (before the tiles are read into memory). */
  peakRssMb: number;
}

/** The mosaic: 10 x 10 fields joined once, then that block joined across and down. */
export async function buildBenchSlide(options: SlideBenchOptions): Promise<number | null> {
  if (existsSync(options.slide)) return null;
  const started = performance.now();
  const fields = readdirSync(options.images, { withFileTypes: true })
    .filter((d) => d.isDirectory())
    .flatMap((d) =>
      readdirSync(path.join(options.images, d.name))
        .filter((f) => f.endsWith('.png'))
        .sort()
        .slice(0, 34)
        .map((f) => path.join(options.images, d.name, f)),
    )
    .slice(0, 100);
  const block = await sharp(fields, { join: { across: 10 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
  const blocksAcross = Math.ceil(options.across / 10);
  const blocksDown = Math.ceil(options.down / 10);
  const blocks = blocksAcross * blocksDown;
  // libvips joins two images or more; a single block is the slide itself.
  const mosaic =
    blocks === 1
      ? sharp(block)
      : sharp(
          Array.from({ length: blocks }, () => block),
          { join: { across: blocksAcross }, limitInputPixels: false },
        );
  await mosaic
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: 256,
      tileHeight: 256,
      compression: 'jpeg',
      quality: 85,
      bigtiff: true,
      xres: 1000 / (0.32 / 0.3005),
      yres: 1000 / (0.32 / 0.3005),
      resolutionUnit: 'cm',
    })
    .toFile(options.slide);
  return (performance.now() - started) / 1000;
}

export async function runSlideBench(
  options: SlideBenchOptions,
  onStage: (stage: string) => void = () => undefined,
): Promise<SlideBenchResult> {
  onStage(existsSync(options.slide) ? `reusing ${options.slide}` : `writing ${options.slide}`);
  const buildSeconds = await buildBenchSlide(options);
  onStage('predicting in a fresh process');
  const result = await startJsonProcess<
    Omit<SlideBenchResult, 'slide'> & { slide: Omit<SlideBenchResult['slide'], 'buildSeconds'> }
  >([worker, options.slide, String(options.modelScale)], { what: 'the slide benchmark worker' }).result;
  return { ...result, slide: { ...result.slide, buildSeconds } };
}

/** `bench slide --features`: the slide written once, then extracted in a fresh process. */
export async function runSlideFeatureBench(
  options: SlideBenchOptions,
  onStage: (stage: string) => void = () => undefined,
): Promise<SlideFeatureBenchResult> {
  onStage(existsSync(options.slide) ? `reusing ${options.slide}` : `writing ${options.slide}`);
  const buildSeconds = await buildBenchSlide(options);
  onStage('extracting features in a fresh process');
  const result = await startJsonProcess<
    Omit<SlideFeatureBenchResult, 'slide'> & { slide: Omit<SlideBenchResult['slide'], 'buildSeconds'> }
  >([featuresWorker, options.slide, String(options.modelScale), options.base ?? 'small_cnn'], {
    what: 'the slide feature benchmark worker',
  }).result;
  return { ...result, slide: { ...result.slide, buildSeconds } };
}

export function formatSlideFeatureBench(r: SlideFeatureBenchResult): string {
  return [
    `slide ${r.slide.file}: ${r.slide.width} x ${r.slide.height} px, ${(r.slide.bytes / 2 ** 20).toFixed(0)} MiB` +
      (r.slide.buildSeconds === null ? '' : ` (written in ${r.slide.buildSeconds.toFixed(0)} s)`),
    `feature extraction (${r.base}): ${r.tiles} tissue tiles (${r.usable} kept by the tile checks) of ${r.dims} features in ${r.extractSeconds.toFixed(1)} s, ${r.extractTilesPerSecond.toFixed(0)} tiles/s`,
    `image path's feature pass on the same tiles in memory: ${r.memorySeconds.toFixed(1)} s, ${r.memoryTilesPerSecond.toFixed(0)} tiles/s`,
    `ratio (extraction / in memory): ${r.ratio.toFixed(2)}; peak RSS while extracting ${r.peakRssMb.toFixed(0)} MB`,
  ].join('\n');
}

export function formatSlideBench(r: SlideBenchResult): string {
  return [
    `slide ${r.slide.file}: ${r.slide.width} x ${r.slide.height} px, ${r.slide.levels} levels, ${(r.slide.bytes / 2 ** 20).toFixed(0)} MiB` +
      (r.slide.buildSeconds === null ? '' : ` (written in ${r.slide.buildSeconds.toFixed(0)} s)`),
    `slide path: ${r.tiles} tissue tiles (${r.answered} answered, the others refused by the tile checks) in ${r.slideSeconds.toFixed(1)} s, ${r.tilesPerSecond.toFixed(0)} tiles/s ` +
      `(mask ${(r.timings.maskMs / 1000).toFixed(1)} s, reads and preparation ${(r.timings.readMs / 1000).toFixed(1)} s, inference ${(r.timings.inferenceMs / 1000).toFixed(1)} s)`,
    `predictor on the same tiles in memory: ${r.predictorSeconds.toFixed(1)} s, ${r.predictorTilesPerSecond.toFixed(0)} tiles/s`,
    `ratio (slide path / predictor alone): ${r.ratio.toFixed(2)}; peak RSS ${r.peakRssMb.toFixed(0)} MB`,
  ].join('\n');
}
