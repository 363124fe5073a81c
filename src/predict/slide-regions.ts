/**
 * A slide's kept tiles, region by region: each region read at the level nearest the model's
 * scale, resampled to it, measured for the tile checks, and cut on the model's grid exactly as
 * the model's patches were; the next region read while the current one is computed. Prediction
 * runs each region through the network (`predictTiles`); training's feature extraction runs it
 * through a frozen base (train/slide-bags.ts) by the same walk (`eachTileRegion`). Memory is one
 * region and the per-tile values.
 */
import { resizeRgb, type RgbImage } from '../image/image-io.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { gridFor, type Grid } from '../image/tiling.js';
import type { Slide } from '../slide/slide.js';
import { VOTE_RULE_NEEDS } from '../engine/pooling.js';
import type { FeatureSums, PatchOutputs } from './patch-outputs.js';
import type { Predictor } from './predictor.js';
import { RegionCheckpoint, type CheckpointSection } from './slide-checkpoint.js';
import type { SlidePredictOptions } from './slide-plan.js';
import { TILE_CHECKS } from '../image/input-checks.js';
import { measureTiles } from './slide-quality.js';
import { throwIfStopped } from './stop.js';

/** Tiles per region side: one read serves up to this many squared tiles. */
export const REGION_TILES = 16;

/** The model's grid over the slide, in level-0 pixels, and the level its regions are read from. */
export interface TileGrid {
  factor: number;
  stride0: number;
  cols: number;
  rows: number;
  readLevel: number;
}

/**
 * Per kept tile, each section of the region checkpoint's layout (`tiles x width` values):
 * the network's outputs, then each tile measure.
 */
export type TileValues = Map<string, Float32Array>;

/** The kept tiles by region ("col,row" of REGION_TILES blocks), in reading order. */
export function regionsOf(kept: readonly [number, number][]): Map<string, number[]> {
  const byBlock = new Map<string, number[]>();
  for (const [k, [col, row]] of kept.entries()) {
    const key = `${Math.floor(col / REGION_TILES)},${Math.floor(row / REGION_TILES)}`;
    (byBlock.get(key) ?? byBlock.set(key, []).get(key))?.push(k);
  }
  return byBlock;
}

/** A region read at the model's scale, its grid, the kept cells in it and their measures. */
export interface TileRegion {
  region: RgbImage;
  grid: Grid;
  cells: [number, number][];
  measures: TileValues;
}

/** One region ("col,row" of REGION_TILES blocks) of the slide, read for its kept tiles `members`. */
async function readTileRegion(
  preprocess: PreprocessConfig,
  slide: Slide,
  tiling: TileGrid,
  kept: readonly [number, number][],
  key: string,
  members: number[],
): Promise<TileRegion> {
  const { factor, stride0, cols, rows, readLevel } = tiling;
  const { patchSize, stride } = preprocess.tiles;
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
  const grid = gridFor(modelWidth, modelHeight, preprocess.tiles);
  const cells = members.map((k) => {
    const [col, row] = kept[k] as [number, number];
    return [col - col0, row - row0] as [number, number];
  });
  const measures = await measureTiles(region, grid, cells, preprocess.targetScale);
  return { region, grid, cells, measures };
}

/** The per-region section of the sum of its tiles' features (the slide's atypicality is scored on their mean). */
const FEATURE_SUM = 'featureSum';

/** The checkpoint's layout for this predictor: its outputs under its vote rule, the tile measures, and its tiles' feature sum when it keeps a reference of slides to score them against. */
function sectionsFor(predictor: Predictor): CheckpointSection[] {
  const classes = predictor.classes.length;
  const needs = VOTE_RULE_NEEDS[predictor.options.vote];
  const dims = predictor.reference?.unit === 'slides' ? (predictor.runner.featureDims ?? 0) : 0;
  return [
    { name: 'probabilities', width: classes },
    ...(needs.logProbabilities ? [{ name: 'logProbabilities', width: classes }] : []),
    ...(needs.attention ? [{ name: 'attention', width: 1 }] : []),
    ...TILE_CHECKS.map((c) => ({ name: c.name, width: 1 })),
    ...(dims > 0 ? [{ name: FEATURE_SUM, width: dims, perRegion: true }] : []),
  ];
}

/** A region's outputs and measures as the checkpoint's sections. */
function sectionsOf(
  outputs: PatchOutputs & { featureSums?: FeatureSums },
  measures: TileValues,
  dims: number,
): TileValues {
  const out: TileValues = new Map(measures);
  out.set('probabilities', outputs.probabilities);
  if (outputs.logProbabilities) out.set('logProbabilities', outputs.logProbabilities);
  if (outputs.attention) out.set('attention', outputs.attention);
  if (dims > 0) {
    // A region whose runner gave no features makes the slide's mean unknown (NaN), not smaller.
    const sums = outputs.featureSums?.sums;
    out.set(FEATURE_SUM, sums ? Float32Array.from(sums) : new Float32Array(dims).fill(Number.NaN));
  }
  return out;
}

/** Per kept tile: the network's outputs under the vote rule, and each tile check's measure by check name. */
export interface KeptTiles {
  outputs: {
    probabilities: Float32Array;
    logProbabilities: Float32Array | undefined;
    attention: Float32Array | undefined;
  };
  measures: TileValues;
  /** The mean of every kept tile's features, when the predictor scores slides' atypicality (else null). */
  meanFeatures: Float32Array | null;
}

/**
 * Walks the given regions (`blocks`: key and kept-tile indices, from regionsOf) in order: each
 * region is read, resampled and measured while the previous one is in `compute`, so reading and
 * computing overlap; `signal` stops between regions. Returns the time spent reading.
 */
export async function eachTileRegion(
  preprocess: PreprocessConfig,
  slide: Slide,
  grid: TileGrid,
  kept: readonly [number, number][],
  blocks: readonly (readonly [string, number[]])[],
  signal: AbortSignal | undefined,
  compute: (region: TileRegion, key: string, members: number[]) => Promise<void>,
): Promise<{ readMs: number }> {
  let readMs = 0;
  const read = async (key: string, members: number[]): Promise<TileRegion> => {
    const started = performance.now();
    const region = await readTileRegion(preprocess, slide, grid, kept, key, members);
    readMs += performance.now() - started;
    return region;
  };
  let next = blocks[0] ? read(...blocks[0]) : undefined;
  for (let b = 0; b < blocks.length; b++) {
    const [key, members] = blocks[b] as [string, number[]];
    const region = await (next as Promise<TileRegion>);
    const following = blocks[b + 1];
    next = following && !signal?.aborted ? read(...following) : undefined;
    if (signal?.aborted) {
      await next?.catch(() => undefined);
      throwIfStopped(signal);
    }
    try {
      await compute(region, key, members);
    } catch (error) {
      // The read under way is left to settle, so no read outlives the slide's handle.
      await next?.catch(() => undefined);
      throw error;
    }
  }
  return { readMs };
}

/**
 * Every kept tile's outputs and measures, region by region (kept per region as the sections of
 * the checkpoint's layout); regions a stopped run finished come from its checkpoint, unread.
 */
export async function predictTiles(
  predictor: Predictor,
  slide: Slide,
  grid: TileGrid,
  kept: readonly [number, number][],
  options: Pick<SlidePredictOptions, 'signal' | 'onProgress' | 'checkpointDir'>,
): Promise<KeptTiles & { readMs: number; inferenceMs: number }> {
  const sections = sectionsFor(predictor);
  const values: TileValues = new Map(
    sections.map(({ name, width, perRegion }) => [
      name,
      new Float32Array(perRegion ? width : kept.length * width),
    ]),
  );
  const dims = sections.find((s) => s.name === FEATURE_SUM)?.width ?? 0;
  let inferenceMs = 0;
  let done = 0;
  const store = (members: number[], region: TileValues): void => {
    for (const { name, width, perRegion } of sections) {
      const from = region.get(name);
      const to = values.get(name);
      if (!from || !to) continue;
      if (perRegion) for (let d = 0; d < width; d++) to[d] = (to[d] ?? 0) + (from[d] ?? 0);
      else
        for (const [i, k] of members.entries()) to.set(from.subarray(i * width, (i + 1) * width), k * width);
    }
    done += members.length;
  };
  const checkpoint = options.checkpointDir
    ? new RegionCheckpoint(options.checkpointDir, sections)
    : undefined;
  const blocks = [...regionsOf(kept)].filter(([key, members]) => {
    const saved = checkpoint?.load(key, members.length);
    if (saved) store(members, saved);
    return !saved;
  });
  if (done > 0) options.onProgress?.(done, kept.length);
  const { readMs } = await eachTileRegion(
    predictor.manifest.preprocess,
    slide,
    grid,
    kept,
    blocks,
    options.signal,
    async ({ region, grid: cellGrid, cells, measures }, key, members) => {
      const inferStarted = performance.now();
      const outputs = await predictor.predictRegion(region, cellGrid, cells, { sumFeatures: dims > 0 });
      inferenceMs += performance.now() - inferStarted;
      const regionValues = sectionsOf(outputs, measures, dims);
      store(members, regionValues);
      checkpoint?.save(key, regionValues);
      options.onProgress?.(done, kept.length);
    },
  );
  const outputs = {
    probabilities: values.get('probabilities') ?? new Float32Array(),
    logProbabilities: values.get('logProbabilities'),
    attention: values.get('attention'),
  };
  const measures = new Map(TILE_CHECKS.map((c) => [c.name, values.get(c.name) ?? new Float32Array()]));
  const sum = values.get(FEATURE_SUM);
  const meanFeatures =
    sum && kept.length > 0 && sum.every(Number.isFinite) ? sum.map((v) => v / kept.length) : null;
  return { outputs, measures, meanFeatures, readMs, inferenceMs };
}
