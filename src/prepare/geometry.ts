/**
 * The geometry rule (image/resampling.ts) applied to a whole catalog before any work: `prepare`
 * and `run` refuse a recipe that would enlarge images beyond its limit, naming how many and how
 * far, instead of training on blurred copies that the package would then refuse at predict.
 */
import type { Catalog } from '../acquire/catalog.js';
import { PathotypeError } from '../errors.js';
import { enlargement } from '../image/resampling.js';
import { mppOfScale } from '../image/scale.js';
import { recipeParts, resolvePrepareRecipe, type PrepareRecipeInput } from './recipe.js';

/** ERR_UPSAMPLING when any catalogued image would be enlarged beyond the recipe's limit. */
export function checkRecipeGeometry(catalog: Catalog, input: PrepareRecipeInput): void {
  const { targetScale, maxUpsampling } = recipeParts(resolvePrepareRecipe(input));
  if (targetScale === null) return;
  const over = catalog
    .images()
    .filter((i) => i.scale !== null && enlargement(i.scale, targetScale) > maxUpsampling);
  if (over.length === 0) return;
  const worst = Math.max(...over.map((i) => enlargement(i.scale ?? targetScale, targetScale)));
  const finest = Math.min(...over.map((i) => i.scale ?? targetScale));
  const finestMpp = mppOfScale(finest * maxUpsampling) ?? 0;
  throw new PathotypeError(
    'ERR_UPSAMPLING',
    `${over.length} of ${catalog.images().length} images would be enlarged up to ${worst.toFixed(2)}x to reach ` +
      `${(mppOfScale(targetScale) ?? 0).toFixed(4)} um/px (scale ${targetScale}); at most ${maxUpsampling}x is allowed, ` +
      `and the model would refuse the same images at predict: tile at ${finestMpp.toFixed(4)} um/px or coarser ` +
      `(--mpp), or allow it with --max-upsampling ${Math.ceil(worst * 100) / 100} (maxUpsampling in a recipe; ` +
      'the package then allows predict the same)',
  );
}
