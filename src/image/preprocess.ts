/**
 * One image's way from file to patches: decode (resampled to the target scale), normalise,
 * tile. The same functions serve prepare (training) and the predictor (inference: images, and
 * a slide's regions), so the model always sees patches made the same way.
 */
import { ConfigError } from '../errors.js';
import { assess, type Assessment } from './input-checks.js';
import { decodeRgb, type RgbImage } from './image-io.js';
import { atJudgingScale, JudgedPixels } from './judged-pixels.js';
import { mppOfScale } from './scale.js';
import { stainDensity, type StainDensity } from './stain-density.js';
import { applyNormaliser, type Normaliser } from './normalise.js';
import {
  copyPatch,
  tileImage,
  validateTiles,
  type BackgroundConfig,
  type Grid,
  type TileConfig,
  type TiledImage,
} from './tiling.js';

export interface PreprocessConfig {
  normaliser: Normaliser;
  /**
   * Pixel scale (relative to the original 1388x1040 release) at which images are tiled; each
   * image is resampled from its own scale to it. Null keeps every image at its own scale.
   */
  targetScale: number | null;
  /**
   * The same resolution in microns per pixel (0.32 / targetScale): patches are `tiles.patchSize`
   * pixels at this many um/px. Written by every store and package since format 1.3 for their
   * readers; pathotype itself reads mppOf.
   */
  mpp?: number | null;
  tiles: TileConfig;
  background: BackgroundConfig;
  /**
   * Most an image may be enlarged to reach targetScale (image/resampling.ts); absent: the rule's
   * MAX_UPSAMPLING. A recipe that states more passes it to its store and package.
   */
  maxUpsampling?: number;
}

export function validatePreprocess(config: PreprocessConfig): void {
  validateTiles(config.tiles);
  if (config.targetScale !== null && !(config.targetScale > 0 && config.targetScale <= 16)) {
    throw new ConfigError(`the target scale must be above 0 and at most 16 (got ${config.targetScale})`);
  }
  if (config.maxUpsampling !== undefined && !(config.maxUpsampling >= 1 && config.maxUpsampling <= 16))
    throw new ConfigError(`the upsampling limit must be from 1 to 16 (got ${config.maxUpsampling})`);
  const { brightness, maxFraction } = config.background;
  if (!(brightness >= 0 && brightness <= 255) || !(maxFraction >= 0 && maxFraction <= 1)) {
    throw new ConfigError('background brightness must be 0-255 and maxFraction 0-1');
  }
}

/**
 * The microns per pixel a preprocessing works at (null: each image at its own): from its target
 * scale, which is what images are resampled to, so the two can never disagree.
 */
export function mppOf(config: Pick<PreprocessConfig, 'targetScale'>): number | null {
  return mppOfScale(config.targetScale);
}

/** The size an image of the given scale has at the target scale. */
export function sizeAtScale(
  width: number,
  height: number,
  imageScale: number | null,
  targetScale: number | null,
): { width: number; height: number } {
  if (targetScale === null) return { width, height };
  if (imageScale === null) {
    throw new ConfigError(
      'the image has no known pixel scale, so it cannot be resampled: give its scale (--scale)',
    );
  }
  const factor = targetScale / imageScale;
  return { width: Math.max(1, Math.round(width * factor)), height: Math.max(1, Math.round(height * factor)) };
}

export interface PreprocessedImage extends TiledImage {
  width: number;
  height: number;
  /**
   * Every input check's measure of the decoded image, before normalisation (input-checks.ts):
   * the predictor judges it, prepare keeps it in the patch store.
   */
  assessment: Assessment;
  /** Of the decoded image, before normalisation: how strongly it is stained (stain-density.ts). */
  stain: StainDensity;
}

export async function preprocessImage(
  source: string | Buffer,
  original: { width: number; height: number; scale: number | null },
  config: PreprocessConfig,
  options: { maxPixels?: number } = {},
): Promise<PreprocessedImage> {
  const size = sizeAtScale(original.width, original.height, original.scale, config.targetScale);
  const decoded = await decodeRgb(source, { ...size, ...options });
  const judged = await atJudgingScale(decoded, config.targetScale ?? original.scale);
  const normalised = prepareRegion(decoded, config);
  const tiled = tileImage(normalised, config.tiles, config.background);
  const assessment = assess(new JudgedPixels(decoded, judged, tiled.count));
  const stain = stainDensity(decoded);
  return { ...tiled, width: normalised.width, height: normalised.height, assessment, stain };
}

/** Pixels already at the target scale, made as training's were before tiling: normalised. */
export function prepareRegion(region: RgbImage, config: PreprocessConfig): RgbImage {
  return applyNormaliser(config.normaliser, region);
}

/** The patches of the given grid cells (col, row), back to back, uint8 HWC. */
export function cutCells(
  image: RgbImage,
  grid: Grid,
  cells: readonly (readonly [number, number])[],
): Uint8Array {
  const bytes = grid.patchSize * grid.patchSize * 3;
  const patches = new Uint8Array(cells.length * bytes);
  for (const [i, [col, row]] of cells.entries()) copyPatch(image, grid, col, row, patches, i * bytes);
  return patches;
}
