/**
 * Cutting an image into square patches on a regular grid, and telling tissue from background.
 * Shared by prepare (training patches) and the predictor (patches to vote), so that both see
 * exactly the same geometry.
 */
import { ConfigError } from '../errors.js';
import type { RgbImage } from './image-io.js';

export interface TileConfig {
  /** Patch side in pixels, at the target scale. */
  patchSize: number;
  /** Step between patches; equal to the patch size for a non-overlapping grid. */
  stride: number;
}

export interface BackgroundConfig {
  enabled: boolean;
  /** A pixel brighter than this (0-255 luminance) and nearly grey counts as background. */
  brightness: number;
  /** A patch with more than this fraction of background pixels is dropped. */
  maxFraction: number;
}

/** Chroma (max - min channel) below which a bright pixel is grey enough to be glass. */
export const BACKGROUND_MAX_CHROMA = 25;

export const DEFAULT_BACKGROUND: BackgroundConfig = { enabled: false, brightness: 220, maxFraction: 0.5 };

export interface Grid {
  cols: number;
  rows: number;
  patchSize: number;
  stride: number;
}

export function validateTiles(config: TileConfig): void {
  if (!Number.isInteger(config.patchSize) || config.patchSize < 4 || config.patchSize > 4096) {
    throw new ConfigError(`the patch size must be an integer from 4 to 4096 (got ${config.patchSize})`);
  }
  if (!Number.isInteger(config.stride) || config.stride < 1) {
    throw new ConfigError(`the patch stride must be a positive integer (got ${config.stride})`);
  }
}

export function gridFor(width: number, height: number, config: TileConfig): Grid {
  const cols = width >= config.patchSize ? Math.floor((width - config.patchSize) / config.stride) + 1 : 0;
  const rows = height >= config.patchSize ? Math.floor((height - config.patchSize) / config.stride) + 1 : 0;
  return { cols, rows, patchSize: config.patchSize, stride: config.stride };
}

/** Copies the patch at grid cell (col, row) into `out` at `offset` (bytes). */
export function copyPatch(
  image: RgbImage,
  grid: Grid,
  col: number,
  row: number,
  out: Uint8Array,
  offset: number,
): void {
  const x0 = col * grid.stride;
  const y0 = row * grid.stride;
  const rowBytes = grid.patchSize * 3;
  for (let y = 0; y < grid.patchSize; y++) {
    const from = ((y0 + y) * image.width + x0) * 3;
    out.set(image.data.subarray(from, from + rowBytes), offset + y * rowBytes);
  }
}

/** Fraction of a patch's pixels that look like empty glass: bright and nearly grey. */
export function backgroundFraction(
  patch: Uint8Array,
  offset: number,
  pixels: number,
  brightness: number,
): number {
  let background = 0;
  for (let i = 0; i < pixels; i++) {
    const r = patch[offset + i * 3] ?? 0;
    const g = patch[offset + i * 3 + 1] ?? 0;
    const b = patch[offset + i * 3 + 2] ?? 0;
    const luminance = 0.299 * r + 0.587 * g + 0.114 * b;
    if (luminance > brightness && Math.max(r, g, b) - Math.min(r, g, b) < BACKGROUND_MAX_CHROMA) background++;
  }
  return background / pixels;
}

export interface TiledImage {
  grid: Grid;
  /** Kept patches back to back, uint8 HWC. */
  patches: Uint8Array;
  /** Grid cell of each kept patch: col, row, col, row, ... */
  cells: Int32Array;
  /** Kept patches. */
  count: number;
  /** Per kept patch: the fraction of its pixels that look like empty glass. */
  backgroundFractions: Float32Array;
  /** Patches the grid had before the background filter. */
  total: number;
}

export function tileImage(
  image: RgbImage,
  tiles: TileConfig,
  filter: BackgroundConfig = DEFAULT_BACKGROUND,
): TiledImage {
  const grid = gridFor(image.width, image.height, tiles);
  const total = grid.cols * grid.rows;
  const bytes = tiles.patchSize * tiles.patchSize * 3;
  const patches = new Uint8Array(total * bytes);
  const cells = new Int32Array(total * 2);
  const background = new Float32Array(total);
  let kept = 0;
  for (let row = 0; row < grid.rows; row++) {
    for (let col = 0; col < grid.cols; col++) {
      copyPatch(image, grid, col, row, patches, kept * bytes);
      const fraction = backgroundFraction(
        patches,
        kept * bytes,
        tiles.patchSize * tiles.patchSize,
        filter.brightness,
      );
      if (filter.enabled && fraction > filter.maxFraction) continue;
      cells[kept * 2] = col;
      cells[kept * 2 + 1] = row;
      background[kept] = fraction;
      kept++;
    }
  }
  return {
    grid,
    patches: patches.slice(0, kept * bytes),
    cells: cells.slice(0, kept * 2),
    count: kept,
    backgroundFractions: background.slice(0, kept),
    total,
  };
}
