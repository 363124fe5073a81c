/**
 * How a slide will be tiled for a model, and what that costs, known from its header alone:
 * the model's grid over the slide at the model's microns per pixel, refused (ERR_SLIDE_TOO_LARGE)
 * when its work is beyond the budget (LIMITS) before a pixel is read.
 */
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { mppOf, type PreprocessConfig } from '../image/preprocess.js';
import { gridFor } from '../image/tiling.js';
import { LIMITS } from '../limits.js';
import { levelFor, type SlideInfo } from '../slide/slide.js';
import { maxUpsamplingOf } from '../image/resampling.js';
import { MASK_SIDE } from './slide-mask.js';

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

/** Microns per pixel at which a model of this preprocessing sees its patches: given, or the preprocessing's. */
export function modelMppOf(preprocess: Pick<PreprocessConfig, 'targetScale'>, override?: number): number {
  if (override !== undefined) return override;
  const mpp = mppOf(preprocess);
  if (mpp === null)
    throw new PathotypeError(
      'ERR_SCALE',
      'the model tiles every image at its own scale, so its microns per pixel are unknown: give --model-mpp',
    );
  return mpp;
}

/**
 * The slide's tiling for a model of this preprocessing (a package's, or a training recipe's),
 * known from its header alone, refused (ERR_SLIDE_TOO_LARGE) when its work is beyond the budget
 * (LIMITS): its pixels first, before its scale is even asked.
 */
export function planSlide(
  preprocess: Pick<PreprocessConfig, 'targetScale' | 'tiles' | 'maxUpsampling'>,
  info: SlideInfo,
  options: Pick<SlidePredictOptions, 'slideMpp' | 'modelMpp'> = {},
): SlidePlan {
  checkSlidePixels(info);
  const slideMpp = options.slideMpp ?? info.mpp;
  if (!slideMpp)
    throw new PathotypeError(
      'ERR_SCALE',
      `${path.basename(info.path)} does not state its microns per pixel: give it (--slide-mpp)`,
    );
  const modelMpp = modelMppOf(preprocess, options.modelMpp);
  const factor = modelMpp / slideMpp;
  const limit = maxUpsamplingOf(preprocess);
  if (factor * limit < 1)
    throw new PathotypeError(
      'ERR_UPSAMPLING',
      `the slide (${slideMpp} um/px) is coarser than the model (${modelMpp.toFixed(3)} um/px) by more than ${limit}x`,
    );
  const { cols, rows } = gridFor(info.width / factor, info.height / factor, preprocess.tiles);
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
