/**
 * The one geometry rule of prepare (and so train and evaluate, which read its patches), predict
 * and serve: an image is resampled from its own scale to the recipe's (the model's), and it may be
 * enlarged by at most `maxUpsampling` (MAX_UPSAMPLING unless a recipe states otherwise; the
 * package then carries the same figure, so predict allows exactly what training did). Beyond it
 * the detail the patches should show is not in the pixels.
 */
import { PathotypeError } from '../errors.js';

/** Most an image may be enlarged to reach a recipe's scale, unless the recipe states a limit. */
export const MAX_UPSAMPLING = 2;

/** The limit a preprocessing (a store's, a package's) works under. */
export function maxUpsamplingOf(config: { maxUpsampling?: number }): number {
  return config.maxUpsampling ?? MAX_UPSAMPLING;
}

/** How much an image at `imageScale` is enlarged to reach `targetScale` (below 1: reduced). */
export function enlargement(imageScale: number, targetScale: number): number {
  return targetScale / imageScale;
}

/**
 * ERR_UPSAMPLING when an image (`what`, at `imageScale`) would be enlarged beyond `limit` to reach
 * `targetScale`; `hint` says what to do instead.
 */
export function checkEnlargement(
  what: string,
  imageScale: number | null,
  targetScale: number | null,
  limit: number,
  hint: string,
): void {
  if (imageScale === null || targetScale === null) return;
  const factor = enlargement(imageScale, targetScale);
  if (factor > limit)
    throw new PathotypeError(
      'ERR_UPSAMPLING',
      `${what} would need ${factor.toFixed(factor < 10 ? 2 : 1)}x enlargement to reach scale ${targetScale}; at most ${limit}x is allowed: ${hint}`,
    );
}
