/**
 * Whole-slide inference with the shared predictor: a tissue mask from a low-resolution view,
 * tiles at the model's physical scale (microns per pixel of the slide against the model's),
 * read region by region at the nearest level, resampled, normalised and cut exactly as the
 * model's patches were, batched through the same network, vote and calibrated answer. Memory is
 * one region and the per-tile outputs, whatever the slide's size.
 */
import { PathotypeError } from '../errors.js';
import { resizeRgb, type RgbImage } from '../image/image-io.js';
import { Slide, type SlideInfo } from '../slide/slide.js';
import { tissueMask } from '../image/tissue.js';
import type { Grid } from '../image/tiling.js';
import type { PatchOutputs } from './patch-outputs.js';
import { MAX_UPSAMPLING, type Predictor } from './predictor.js';
import { rounded, type Verdict } from './verdict.js';

/** The tissue mask's longest side, in pixels. */
export const MASK_SIDE = 2048;
/** A tile is read when at least this share of it is tissue in the mask. */
export const MIN_TILE_TISSUE = 0.5;
/** Tiles per region side: one read serves up to this many squared tiles. */
export const REGION_TILES = 16;

export interface SlidePredictOptions {
  /** Microns per level-0 pixel, when the slide does not say. */
  slideMpp?: number;
  /** Microns per pixel at which the model sees its patches; default ORIGINAL_MPP / its scale. */
  modelMpp?: number;
  onProgress?: (done: number, total: number) => void;
  /** Stops between regions (a server shutting down); the promise rejects with ERR_ABORTED. */
  signal?: AbortSignal;
}

export interface SlideTile {
  /** Level-0 pixel coordinates of the tile's top-left corner, and its side. */
  x: number;
  y: number;
  size: number;
  predicted: number;
  probabilities: number[];
}

export interface SlidePrediction {
  slide: Pick<SlideInfo, 'path' | 'vendor' | 'width' | 'height' | 'levels'> & { mpp: number };
  model: { name: string; version: number; classes: string[]; mpp: number; rule: string };
  /** The tiling in level-0 pixels: tile side, step, and the grid it spans. */
  tiling: { size: number; stride: number; cols: number; rows: number; level: number };
  /** The share of the slide that is tissue in the mask, and the tiles kept. */
  tissue: { fraction: number; tiles: number };
  tiles: SlideTile[];
  result: Verdict;
  timings: { totalMs: number; maskMs: number; readMs: number; inferenceMs: number };
}

/** A low-resolution RGB view of the whole slide, read in strips so no read is large. */
async function overview(slide: Slide, side: number): Promise<{ image: RgbImage; downsample: number }> {
  const { width, height } = slide.info;
  const downsample = Math.max(1, Math.max(width, height) / side);
  const level = slide.levelFor(downsample);
  const ds = slide.info.levels[level]?.downsample ?? 1;
  const outWidth = Math.max(1, Math.round(width / downsample));
  const outHeight = Math.max(1, Math.round(height / downsample));
  const data = new Uint8Array(outWidth * outHeight * 3);
  const levelWidth = Math.ceil(width / ds);
  const stripRows = Math.max(1, Math.floor(8_000_000 / levelWidth));
  let outRow = 0;
  for (let y0 = 0; y0 < height && outRow < outHeight;) {
    const rowsLevel = Math.min(stripRows, Math.ceil((height - y0) / ds));
    const strip = await slide.readRegion({ x: 0, y: y0, level, width: levelWidth, height: rowsLevel });
    const rowsOut = Math.min(outHeight - outRow, Math.max(1, Math.round((rowsLevel * ds) / downsample)));
    const resized = await resizeRgb(strip, outWidth, rowsOut);
    data.set(resized.data, outRow * outWidth * 3);
    outRow += rowsOut;
    y0 += Math.round(rowsLevel * ds);
  }
  return { image: { data, width: outWidth, height: outHeight }, downsample };
}

/** The grid cells (col, row) whose tile is mostly tissue in the slide's mask. */
async function tissueTiles(
  slide: Slide,
  grid: { size0: number; stride0: number; cols: number; rows: number },
): Promise<{ kept: [number, number][]; fraction: number }> {
  const { size0, stride0, cols, rows } = grid;
  const view = await overview(slide, MASK_SIDE);
  const mask = tissueMask(view.image);
  const { width, height } = view.image;
  const tissueOf = (col: number, row: number): number => {
    const x0 = Math.floor((col * stride0) / view.downsample);
    const y0 = Math.floor((row * stride0) / view.downsample);
    const x1 = Math.max(x0 + 1, Math.min(width, Math.ceil((col * stride0 + size0) / view.downsample)));
    const y1 = Math.max(y0 + 1, Math.min(height, Math.ceil((row * stride0 + size0) / view.downsample)));
    let on = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) on += mask[y * width + x] ?? 0;
    return on / ((x1 - x0) * (y1 - y0));
  };
  const kept: [number, number][] = [];
  for (let row = 0; row < rows; row++)
    for (let col = 0; col < cols; col++) if (tissueOf(col, row) >= MIN_TILE_TISSUE) kept.push([col, row]);
  if (kept.length === 0)
    throw new PathotypeError('ERR_BACKGROUND', `${slide.info.path} shows no tissue at the model's tile size`);
  return { kept, fraction: mask.reduce((a, b) => a + b, 0) / mask.length };
}

/**
 * The kept tiles through the network, region by region: each region read at `readLevel`,
 * resampled to the model's scale, normalised, cut on the model's grid; the next region read
 * while the engine computes the current one.
 */
async function predictTiles(
  predictor: Predictor,
  slide: Slide,
  grid: { factor: number; stride0: number; cols: number; rows: number; readLevel: number },
  kept: readonly [number, number][],
  options: SlidePredictOptions,
): Promise<{
  probabilities: Float32Array;
  logProbabilities: Float32Array | undefined;
  readMs: number;
  inferenceMs: number;
}> {
  const { factor, stride0, cols, rows, readLevel } = grid;
  const { patchSize, stride } = predictor.manifest.preprocess.tiles;
  const levelDs = slide.info.levels[readLevel]?.downsample ?? 1;
  const classes = predictor.classes.length;
  const probabilities = new Float32Array(kept.length * classes);
  const logProbabilities =
    predictor.options.vote === 'logit' ? new Float32Array(kept.length * classes) : undefined;
  const byBlock = new Map<string, number[]>();
  for (const [k, [col, row]] of kept.entries()) {
    const key = `${Math.floor(col / REGION_TILES)},${Math.floor(row / REGION_TILES)}`;
    (byBlock.get(key) ?? byBlock.set(key, []).get(key))?.push(k);
  }
  let readMs = 0;
  let inferenceMs = 0;
  let done = 0;
  // One region at the model's scale, with its grid and the kept cells in it.
  const readRegion = async (
    key: string,
    members: number[],
  ): Promise<{ region: RgbImage; grid: Grid; cells: [number, number][] }> => {
    const [bc, br] = key.split(',').map(Number) as [number, number];
    const col0 = bc * REGION_TILES;
    const row0 = br * REGION_TILES;
    const lastCol = Math.min(cols - 1, col0 + REGION_TILES - 1);
    const lastRow = Math.min(rows - 1, row0 + REGION_TILES - 1);
    // The region in model pixels, then in level-0 and read-level pixels.
    const modelWidth = (lastCol - col0) * stride + patchSize;
    const modelHeight = (lastRow - row0) * stride + patchSize;
    const readStarted = performance.now();
    const raw = await slide.readRegion({
      x: Math.round(col0 * stride0),
      y: Math.round(row0 * stride0),
      level: readLevel,
      width: Math.max(1, Math.round((modelWidth * factor) / levelDs)),
      height: Math.max(1, Math.round((modelHeight * factor) / levelDs)),
    });
    const region = await resizeRgb(raw, modelWidth, modelHeight);
    const grid = predictor.gridOver(modelWidth, modelHeight);
    const cells = members.map((k) => {
      const [col, row] = kept[k] as [number, number];
      return [col - col0, row - row0] as [number, number];
    });
    readMs += performance.now() - readStarted;
    return { region, grid, cells };
  };
  // The next region is read and cut while the engine computes this one's tiles.
  const blocks = [...byBlock];
  let next = blocks[0] ? readRegion(...blocks[0]) : undefined;
  for (let b = 0; b < blocks.length; b++) {
    const members = (blocks[b] as [string, number[]])[1];
    const { region, grid, cells } = await (next as ReturnType<typeof readRegion>);
    const following = blocks[b + 1];
    next = following && !options.signal?.aborted ? readRegion(...following) : undefined;
    if (options.signal?.aborted) {
      await next?.catch(() => undefined);
      throw new PathotypeError('ERR_ABORTED', 'the slide prediction was stopped');
    }
    const inferStarted = performance.now();
    const outputs: PatchOutputs = await predictor.predictRegion(region, grid, cells);
    inferenceMs += performance.now() - inferStarted;
    for (const [i, k] of members.entries()) {
      probabilities.set(outputs.probabilities.subarray(i * classes, (i + 1) * classes), k * classes);
      if (logProbabilities && outputs.logProbabilities)
        logProbabilities.set(outputs.logProbabilities.subarray(i * classes, (i + 1) * classes), k * classes);
    }
    done += members.length;
    options.onProgress?.(done, kept.length);
  }

  return { probabilities, logProbabilities, readMs, inferenceMs };
}

export async function predictSlide(
  predictor: Predictor,
  file: string,
  options: SlidePredictOptions = {},
): Promise<SlidePrediction> {
  const started = performance.now();
  const slide = await Slide.open(file);
  try {
    const slideMpp = options.slideMpp ?? slide.info.mpp;
    if (!slideMpp)
      throw new PathotypeError(
        'ERR_SCALE',
        `${slide.info.path} does not state its microns per pixel: give it (--slide-mpp)`,
      );
    const modelMpp = predictor.mpp(options.modelMpp);
    // Level-0 pixels per model pixel.
    const factor = modelMpp / slideMpp;
    if (factor * MAX_UPSAMPLING < 1)
      throw new PathotypeError(
        'ERR_UPSAMPLING',
        `the slide (${slideMpp} um/px) is coarser than the model (${modelMpp.toFixed(3)} um/px) by more than ${MAX_UPSAMPLING}x`,
      );
    const { width, height } = slide.info;
    // The model's grid over the slide at the model's scale, in level-0 pixels.
    const { cols, rows, patchSize, stride } = predictor.gridOver(width / factor, height / factor);
    const size0 = patchSize * factor;
    const stride0 = stride * factor;

    const maskStarted = performance.now();
    const { kept, fraction } = await tissueTiles(slide, { size0, stride0, cols, rows });
    const maskMs = performance.now() - maskStarted;

    const readLevel = slide.levelFor(factor);
    const { probabilities, logProbabilities, readMs, inferenceMs } = await predictTiles(
      predictor,
      slide,
      { factor, stride0, cols, rows, readLevel },
      kept,
      options,
    );

    const { vote: v, verdict } = predictor.verdictOn(
      logProbabilities ? { probabilities, logProbabilities } : { probabilities },
      kept.length,
    );
    const names = predictor.classes;
    return {
      slide: {
        path: slide.info.path,
        vendor: slide.info.vendor,
        width,
        height,
        levels: slide.info.levels,
        mpp: slideMpp,
      },
      model: {
        name: predictor.manifest.name,
        version: predictor.manifest.version,
        classes: [...names],
        mpp: modelMpp,
        rule: predictor.options.vote,
      },
      tiling: { size: size0, stride: stride0, cols, rows, level: readLevel },
      tissue: {
        fraction,
        tiles: kept.length,
      },
      tiles: kept.map(([col, row], k) => ({
        x: Math.round(col * stride0),
        y: Math.round(row * stride0),
        size: Math.round(size0),
        predicted: v.patchClasses[k] ?? 0,
        probabilities: Array.from(probabilities.subarray(k * names.length, (k + 1) * names.length), rounded),
      })),
      result: verdict,
      timings: { totalMs: performance.now() - started, maskMs, readMs, inferenceMs },
    };
  } finally {
    await slide.close();
  }
}
