/**
 * The tiles a model reads of a slide: its plan at the model's microns per pixel (slide-plan.ts),
 * the model's grid in level-0 pixels, and the grid cells that are tissue in the mask
 * (slide-mask.ts). Prediction and training's feature extraction both start here, from the
 * preprocessing alone (a package's or a recipe's), so they cut the same tiles.
 */
import type { PreprocessConfig } from '../image/preprocess.js';
import type { StainDensity } from '../image/stain-density.js';
import type { Slide } from '../slide/slide.js';
import { planSlide, type SlidePlan, type SlidePredictOptions } from './slide-plan.js';
import { tissueTiles } from './slide-mask.js';
import type { TileGrid } from './slide-regions.js';

export interface SlideTiles {
  plan: SlidePlan;
  /** The model's grid over the slide in level-0 pixels, and the level its regions are read from. */
  grid: TileGrid;
  /** A tile's side in level-0 pixels. */
  size0: number;
  /** The grid cells (col, row) that are mostly tissue, row by row. */
  kept: [number, number][];
  /** The share of the slide that is tissue in the mask. */
  fraction: number;
  /** The tissue's stain densities in the mask's overview. */
  stain: StainDensity;
  maskMs: number;
}

/** The slide's tissue tiles for a model of this preprocessing (ERR_BACKGROUND when it shows none). */
export async function slideTiles(
  slide: Slide,
  preprocess: PreprocessConfig,
  options: Pick<SlidePredictOptions, 'slideMpp' | 'modelMpp' | 'signal'> = {},
): Promise<SlideTiles> {
  const plan = planSlide(preprocess, slide.info, options);
  const { factor, cols, rows } = plan;
  const { patchSize, stride } = preprocess.tiles;
  const size0 = patchSize * factor;
  const stride0 = stride * factor;
  const started = performance.now();
  const { kept, fraction, stain } = await tissueTiles(slide, { size0, stride0, cols, rows }, options.signal);
  const maskMs = performance.now() - started;
  const grid = { factor, stride0, cols, rows, readLevel: slide.levelFor(factor) };
  return { plan, grid, size0, kept, fraction, stain, maskMs };
}

/** A grid cell's top-left corner in level-0 pixels: what a prediction's tiles and a bag's coords give. */
export function tileOrigin(grid: Pick<TileGrid, 'stride0'>, col: number, row: number): [number, number] {
  return [Math.round(col * grid.stride0), Math.round(row * grid.stride0)];
}
