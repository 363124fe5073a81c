/**
 * Whole-slide inference with the shared predictor: a tissue mask from a low-resolution view,
 * tiles at the model's physical scale (microns per pixel of the slide against the model's),
 * read region by region at the nearest level, resampled, normalised and cut exactly as the
 * model's patches were, batched through the same network, vote and calibrated answer. Memory is
 * one region and the per-tile outputs, whatever the slide's size.
 */
import { PathotypeError } from '../errors.js';
import { resizeRgb, type RgbImage } from '../image/image-io.js';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { LIMITS } from '../limits.js';
import { levelFor, Slide, type SlideInfo } from '../slide/slide.js';
import { densityRatios, isFolded, tissueDensity } from '../image/artefacts.js';
import { cellMeasures, focusMeasure, MIN_TILE_FOCUS } from '../image/focus.js';
import { tissueMask } from '../image/tissue.js';
import type { Grid } from '../image/tiling.js';
import type { PatchOutputs } from './patch-outputs.js';
import type { Predictor } from './predictor.js';
import { maxUpsamplingOf } from '../image/resampling.js';
import { rounded, roundedWeight, type Verdict } from './verdict.js';
import { argmax } from './vote.js';

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
  /** Stops between reads (a server shutting down, a cancelled job); rejects with ERR_ABORTED or ERR_CANCELLED. */
  signal?: AbortSignal;
  /** Keeps each finished region's outputs here, so a run stopped midway continues where it was. */
  checkpointDir?: string;
}

/** The outputs of finished regions, one small file each (written whole, then renamed). */
class RegionCheckpoint {
  constructor(
    readonly dir: string,
    readonly classes: number,
    readonly withLog: boolean,
    readonly withAttention: boolean,
  ) {
    mkdirSync(dir, { recursive: true });
  }

  #file(key: string): string {
    return path.join(this.dir, `${key.replace(',', '_')}.f32`);
  }

  load(key: string, tiles: number): { outputs: PatchOutputs; quality: TileQuality } | undefined {
    const file = this.#file(key);
    if (!existsSync(file)) return undefined;
    const bytes = readFileSync(file);
    const values = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
    const n = tiles * this.classes;
    const outputsLength = n * (this.withLog ? 2 : 1) + (this.withAttention ? tiles : 0);
    if (values.length !== outputsLength + 2 * tiles) return undefined;
    return {
      outputs: {
        probabilities: values.slice(0, n),
        ...(this.withLog ? { logProbabilities: values.slice(n, 2 * n) } : {}),
        ...(this.withAttention ? { attention: values.slice(outputsLength - tiles, outputsLength) } : {}),
      },
      quality: {
        focus: values.slice(outputsLength, outputsLength + tiles),
        density: values.slice(outputsLength + tiles),
      },
    };
  }

  /** A region's outputs (probabilities, log-probabilities, attention scores), then each tile's focus, then its density. */
  save(key: string, outputs: PatchOutputs, quality: TileQuality): void {
    const parts = [
      outputs.probabilities,
      ...(this.withLog && outputs.logProbabilities ? [outputs.logProbabilities] : []),
      ...(this.withAttention && outputs.attention ? [outputs.attention] : []),
      quality.focus,
      quality.density,
    ];
    const file = this.#file(key);
    writeFileSync(
      `${file}.tmp`,
      Buffer.concat(parts.map((p) => Buffer.from(p.buffer, p.byteOffset, p.byteLength))),
    );
    renameSync(`${file}.tmp`, file);
  }
}

export interface SlideTile {
  /** Level-0 pixel coordinates of the tile's top-left corner, and its side. */
  x: number;
  y: number;
  size: number;
  predicted: number;
  probabilities: number[];
  /** Its focus measure; below MIN_TILE_FOCUS the tile is left out of the slide's answer. */
  focus: number;
  blurred: boolean;
  /** Its optical density over the slide's median tile's; a fold (image/artefacts.ts) is left out too. */
  densityRatio: number;
  folded: boolean;
  /** Under the 'attention' rule: the tile's weight in the slide's answer (0 for a tile left out; they sum to 1). */
  attention?: number;
}

/** Per tile (kept tile, or a region's): its focus and its tissue's optical density. */
interface TileQuality {
  focus: Float32Array;
  density: Float32Array;
}

export interface SlidePrediction {
  slide: Pick<SlideInfo, 'path' | 'vendor' | 'width' | 'height' | 'levels'> & { mpp: number };
  model: { name: string; version: number; classes: string[]; mpp: number; rule: string };
  /** The tiling in level-0 pixels: tile side, step, and the grid it spans. */
  tiling: { size: number; stride: number; cols: number; rows: number; level: number };
  /** The share of the slide that is tissue in the mask, the tiles kept, and those of them out of focus or folded. */
  tissue: { fraction: number; tiles: number; blurred: number; folded: number };
  tiles: SlideTile[];
  result: Verdict;
  timings: { totalMs: number; maskMs: number; readMs: number; inferenceMs: number };
}

/** How a slide will be tiled for the model, and what that costs: known from its header alone. */
export interface SlidePlan {
  slideMpp: number;
  modelMpp: number;
  /** Level-0 pixels per model pixel. */
  factor: number;
  cols: number;
  rows: number;
  /** The level the tissue mask's overview reads, and its pixels. */
  overviewLevel: number;
  overviewPixels: number;
}

/**
 * The slide's tiling for this model, known from its header alone, refused (ERR_SLIDE_TOO_LARGE)
 * when its work is beyond the budget (LIMITS): its pixels first, before its scale is even asked.
 */
export function planSlide(
  predictor: Predictor,
  info: SlideInfo,
  options: SlidePredictOptions = {},
): SlidePlan {
  checkSlidePixels(info);
  const slideMpp = options.slideMpp ?? info.mpp;
  if (!slideMpp)
    throw new PathotypeError(
      'ERR_SCALE',
      `${path.basename(info.path)} does not state its microns per pixel: give it (--slide-mpp)`,
    );
  const modelMpp = predictor.mpp(options.modelMpp);
  const factor = modelMpp / slideMpp;
  const limit = maxUpsamplingOf(predictor.manifest.preprocess);
  if (factor * limit < 1)
    throw new PathotypeError(
      'ERR_UPSAMPLING',
      `the slide (${slideMpp} um/px) is coarser than the model (${modelMpp.toFixed(3)} um/px) by more than ${limit}x`,
    );
  const { cols, rows } = predictor.gridOver(info.width / factor, info.height / factor);
  const overviewLevel = levelFor(info, Math.max(1, Math.max(info.width, info.height) / MASK_SIDE));
  const level = info.levels[overviewLevel];
  const overviewPixels = level ? level.width * level.height : info.width * info.height;
  const plan = { slideMpp, modelMpp, factor, cols, rows, overviewLevel, overviewPixels };
  checkSlideWork(info, plan);
  return plan;
}

function refuseSlide(info: SlideInfo, what: string): never {
  throw new PathotypeError(
    'ERR_SLIDE_TOO_LARGE',
    `${path.basename(info.path)} is ${info.width}x${info.height} px: ${what}`,
  );
}

/** Refuses a slide of more level-0 pixels than LIMITS.slidePixels. */
function checkSlidePixels(info: SlideInfo): void {
  if (info.width * info.height > LIMITS.slidePixels)
    refuseSlide(
      info,
      `${((info.width * info.height) / 1e9).toFixed(1)} Gpx, above the limit of ${LIMITS.slidePixels / 1e9} Gpx`,
    );
}

/** Refuses a slide of more tiles, or a costlier tissue-mask overview, than LIMITS allow. */
function checkSlideWork(info: SlideInfo, plan: SlidePlan): void {
  const refuse = (what: string): never => refuseSlide(info, what);
  if (plan.cols * plan.rows > LIMITS.slideTiles)
    refuse(`${plan.cols * plan.rows} tiles at the model's scale, above the limit of ${LIMITS.slideTiles}`);
  if (plan.overviewPixels > LIMITS.slideOverviewPixels)
    refuse(
      `its tissue mask would read ${(plan.overviewPixels / 1e6).toFixed(0)} Mpx (the slide has no level near ${MASK_SIDE} px), above the limit of ${LIMITS.slideOverviewPixels / 1e6} Mpx: give a pyramidal slide`,
    );
}

/** Stops long work between its reads once `signal` says so (a cancelled job, a closing server). */
export function throwIfStopped(signal: AbortSignal | undefined): void {
  if (signal?.aborted)
    throw new PathotypeError(
      signal.reason === 'cancelled' ? 'ERR_CANCELLED' : 'ERR_ABORTED',
      signal.reason === 'cancelled' ? 'the slide job was cancelled' : 'the slide prediction was stopped',
    );
}

/** A low-resolution RGB view of the whole slide, read in strips so no read is large. */
async function overview(
  slide: Slide,
  side: number,
  signal: AbortSignal | undefined,
): Promise<{ image: RgbImage; downsample: number }> {
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
    throwIfStopped(signal);
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
  signal: AbortSignal | undefined,
): Promise<{ kept: [number, number][]; fraction: number }> {
  const { size0, stride0, cols, rows } = grid;
  const view = await overview(slide, MASK_SIDE, signal);
  throwIfStopped(signal);
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
/** The kept tiles by region ("col,row" of REGION_TILES blocks), in reading order. */
function regionsOf(kept: readonly [number, number][]): Map<string, number[]> {
  const byBlock = new Map<string, number[]>();
  for (const [k, [col, row]] of kept.entries()) {
    const key = `${Math.floor(col / REGION_TILES)},${Math.floor(row / REGION_TILES)}`;
    (byBlock.get(key) ?? byBlock.set(key, []).get(key))?.push(k);
  }
  return byBlock;
}

interface TileGrid {
  factor: number;
  stride0: number;
  cols: number;
  rows: number;
  readLevel: number;
}

/** A region read at the model's scale, its grid, the kept cells in it and their quality. */
interface TileRegion {
  region: RgbImage;
  grid: Grid;
  cells: [number, number][];
  quality: TileQuality;
}

/** One region ("col,row" of REGION_TILES blocks) of the slide, read for its kept tiles `members`. */
async function readTileRegion(
  predictor: Predictor,
  slide: Slide,
  tiling: TileGrid,
  kept: readonly [number, number][],
  key: string,
  members: number[],
): Promise<TileRegion> {
  const { factor, stride0, cols, rows, readLevel } = tiling;
  const { patchSize, stride } = predictor.manifest.preprocess.tiles;
  const levelDs = slide.info.levels[readLevel]?.downsample ?? 1;
  const [bc, br] = key.split(',').map(Number) as [number, number];
  const col0 = bc * REGION_TILES;
  const row0 = br * REGION_TILES;
  const lastCol = Math.min(cols - 1, col0 + REGION_TILES - 1);
  const lastRow = Math.min(rows - 1, row0 + REGION_TILES - 1);
  // The region in model pixels, then in level-0 and read-level pixels.
  const modelWidth = (lastCol - col0) * stride + patchSize;
  const modelHeight = (lastRow - row0) * stride + patchSize;
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
  const measures = [focusMeasure, tissueDensity];
  const [focus, density] = (await cellMeasures(
    region,
    grid,
    cells,
    predictor.manifest.preprocess.targetScale,
    measures,
  )) as [Float32Array, Float32Array];
  return { region, grid, cells, quality: { focus, density } };
}

async function predictTiles(
  predictor: Predictor,
  slide: Slide,
  grid: TileGrid,
  kept: readonly [number, number][],
  options: SlidePredictOptions,
): Promise<{
  probabilities: Float32Array;
  logProbabilities: Float32Array | undefined;
  /** Per kept tile under the 'attention' rule: its score before the softmax over the slide's clear tiles. */
  attention: Float32Array | undefined;
  /** Per kept tile: its focus and density. */
  quality: TileQuality;
  readMs: number;
  inferenceMs: number;
}> {
  const classes = predictor.classes.length;
  const probabilities = new Float32Array(kept.length * classes);
  const rule = predictor.options.vote;
  const logProbabilities =
    rule === 'logit' || rule === 'attention' ? new Float32Array(kept.length * classes) : undefined;
  const attention = rule === 'attention' ? new Float32Array(kept.length) : undefined;
  const quality: TileQuality = {
    focus: new Float32Array(kept.length),
    density: new Float32Array(kept.length),
  };
  const byBlock = regionsOf(kept);
  let readMs = 0;
  let inferenceMs = 0;
  let done = 0;
  const readRegion = async (key: string, members: number[]): Promise<TileRegion> => {
    const readStarted = performance.now();
    const region = await readTileRegion(predictor, slide, grid, kept, key, members);
    readMs += performance.now() - readStarted;
    return region;
  };
  // Regions a stopped run finished already come from its checkpoint, and are not read again.
  const store = (members: number[], outputs: PatchOutputs, measured: TileQuality): void => {
    for (const [i, k] of members.entries()) {
      quality.focus[k] = measured.focus[i] ?? 0;
      quality.density[k] = measured.density[i] ?? 0;
      probabilities.set(outputs.probabilities.subarray(i * classes, (i + 1) * classes), k * classes);
      if (logProbabilities && outputs.logProbabilities)
        logProbabilities.set(outputs.logProbabilities.subarray(i * classes, (i + 1) * classes), k * classes);
      if (attention && outputs.attention) attention[k] = outputs.attention[i] ?? 0;
    }
    done += members.length;
  };
  const checkpoint = options.checkpointDir
    ? new RegionCheckpoint(options.checkpointDir, classes, !!logProbabilities, !!attention)
    : undefined;
  const blocks = [...byBlock].filter(([key, members]) => {
    const saved = checkpoint?.load(key, members.length);
    if (saved) store(members, saved.outputs, saved.quality);
    return !saved;
  });
  if (done > 0) options.onProgress?.(done, kept.length);
  // The next region is read and cut while the engine computes this one's tiles.
  let next = blocks[0] ? readRegion(...blocks[0]) : undefined;
  for (let b = 0; b < blocks.length; b++) {
    const [key, members] = blocks[b] as [string, number[]];
    const { region, grid, cells, quality: measured } = await (next as ReturnType<typeof readRegion>);
    const following = blocks[b + 1];
    next = following && !options.signal?.aborted ? readRegion(...following) : undefined;
    if (options.signal?.aborted) {
      await next?.catch(() => undefined);
      throwIfStopped(options.signal);
    }
    const inferStarted = performance.now();
    const outputs: PatchOutputs = await predictor.predictRegion(region, grid, cells);
    inferenceMs += performance.now() - inferStarted;
    store(members, outputs, measured);
    checkpoint?.save(key, outputs, measured);
    options.onProgress?.(done, kept.length);
  }

  return { probabilities, logProbabilities, attention, quality, readMs, inferenceMs };
}

/**
 * The slide's answer from its clear tiles: in focus and not folded. The others are kept, marked,
 * for the viewer.
 */
function verdictOnClearTiles(
  predictor: Predictor,
  info: SlideInfo,
  outputs: {
    probabilities: Float32Array;
    logProbabilities: Float32Array | undefined;
    attention: Float32Array | undefined;
  },
  tiles: { blurred: boolean; folded: boolean }[],
): { verdict: Verdict; weights: Float32Array | undefined } {
  const classes = predictor.classes.length;
  const { probabilities, logProbabilities, attention } = outputs;
  const clear = Array.from(tiles.keys()).filter((k) => !tiles[k]?.blurred && !tiles[k]?.folded);
  if (clear.length === 0) {
    const allBlurred = tiles.every((t) => t.blurred);
    throw new PathotypeError(
      allBlurred ? 'ERR_BLURRED' : 'ERR_TISSUE_FOLD',
      `every tissue tile of ${path.basename(info.path)} is ${allBlurred ? 'out of focus' : 'out of focus or folded'}`,
    );
  }
  const rowsOf = (a: Float32Array): Float32Array => {
    const out = new Float32Array(clear.length * classes);
    for (const [i, k] of clear.entries()) out.set(a.subarray(k * classes, (k + 1) * classes), i * classes);
    return out;
  };
  const { vote, verdict } = predictor.verdictOn(
    {
      probabilities: rowsOf(probabilities),
      ...(logProbabilities ? { logProbabilities: rowsOf(logProbabilities) } : {}),
      ...(attention ? { attention: Float32Array.from(clear, (k) => attention[k] ?? 0) } : {}),
    },
    clear.length,
  );
  // Each kept tile's weight in the answer; the tiles left out weigh nothing.
  const weights = vote.attention ? new Float32Array(tiles.length) : undefined;
  if (weights && vote.attention) for (const [i, k] of clear.entries()) weights[k] = vote.attention[i] ?? 0;
  return { verdict, weights };
}

export async function predictSlide(
  predictor: Predictor,
  file: string,
  options: SlidePredictOptions = {},
): Promise<SlidePrediction> {
  const started = performance.now();
  const slide = await Slide.open(file);
  try {
    const plan = planSlide(predictor, slide.info, options);
    const { slideMpp, modelMpp, factor, cols, rows } = plan;
    const { width, height } = slide.info;
    // The model's grid over the slide at the model's scale, in level-0 pixels.
    const { patchSize, stride } = predictor.manifest.preprocess.tiles;
    const size0 = patchSize * factor;
    const stride0 = stride * factor;

    const maskStarted = performance.now();
    const { kept, fraction } = await tissueTiles(slide, { size0, stride0, cols, rows }, options.signal);
    const maskMs = performance.now() - maskStarted;

    const readLevel = slide.levelFor(factor);
    const { probabilities, logProbabilities, attention, quality, readMs, inferenceMs } = await predictTiles(
      predictor,
      slide,
      { factor, stride0, cols, rows, readLevel },
      kept,
      options,
    );

    const names = predictor.classes;
    const ratios = densityRatios(quality.density);
    const tiles: SlideTile[] = kept.map(([col, row], k) => ({
      x: Math.round(col * stride0),
      y: Math.round(row * stride0),
      size: Math.round(size0),
      predicted: argmax(probabilities, k * names.length, names.length),
      probabilities: Array.from(probabilities.subarray(k * names.length, (k + 1) * names.length), rounded),
      focus: rounded(quality.focus[k] ?? 0),
      blurred: (quality.focus[k] ?? 0) < MIN_TILE_FOCUS,
      densityRatio: rounded(ratios[k] ?? 0),
      folded: isFolded(ratios[k] ?? 0),
    }));
    const { verdict, weights } = verdictOnClearTiles(
      predictor,
      slide.info,
      { probabilities, logProbabilities, attention },
      tiles,
    );
    if (weights) for (const [k, tile] of tiles.entries()) tile.attention = roundedWeight(weights[k] ?? 0);
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
        blurred: tiles.filter((t) => t.blurred).length,
        folded: tiles.filter((t) => t.folded).length,
      },
      tiles,
      result: verdict,
      timings: { totalMs: performance.now() - started, maskMs, readMs, inferenceMs },
    };
  } finally {
    await slide.close();
  }
}
