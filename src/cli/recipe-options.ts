/**
 * The preparation recipe's flags, shared by `prepare` and `run`: one definition, one function
 * from flags to recipe. Flags carry no commander defaults: the recipe module fills them, so a
 * config file's value is overridden only by a flag actually given.
 */
import type { Command } from 'commander';

import { mppOfScale, ORIGINAL_MPP } from '../image/scale.js';

import { NORMALISATION_METHODS } from '../image/normalise.js';
import {
  PREPARE_DEFAULTS as D,
  PREPARE_RECIPE_KEYS,
  yieldResolution,
  type PrepareRecipeInput,
} from '../prepare/recipe.js';
import { choice, fraction, positiveInt, positiveNumber } from './options.js';

/**
 * `defaults`: 'recipe' (prepare: the recipe module's values), or 'preset' (run: each preset sets
 * its own, so printing the recipe module's would tell a run's user what it will not do).
 */
export function addRecipeOptions(command: Command, defaults: 'recipe' | 'preset' = 'recipe'): Command {
  const d = (value: string | number): string =>
    defaults === 'preset' ? "(default: the preset's)" : `(default: ${value})`;
  return command
    .option(
      '--normalisation <method>',
      `none, percentile (KNIME-style stretch), reinhard, macenko, haematoxylin (the nuclear stain alone) or grey (luminance, stretched) ${d(D.normalisation)}`,
      choice(NORMALISATION_METHODS),
    )
    .option(
      '--reference <image>',
      "reference image for reinhard/macenko: a path, a catalogued CLASS/file name, or 'dataset'",
    )
    .option('--percentile-low <p>', `percentile stretch: low percentile ${d(D.percentileLow)}`, Number)
    .option('--percentile-high <p>', `percentile stretch: high percentile ${d(D.percentileHigh)}`, Number)
    .option(
      '--mpp <um>',
      `tile at this many microns per pixel ${d(`${mppOfScale(D.targetScale) ?? ORIGINAL_MPP}, the original release's, KNIME's`)}`,
      positiveNumber,
    )
    .option(
      '--target-scale <x>',
      `the same as a scale relative to the original 1388x1040 release (${ORIGINAL_MPP} um/px): an alias of --mpp`,
      positiveNumber,
    )
    .option('--own-scale', 'tile every image at its own scale (ignores --mpp and --target-scale)')
    .option('--patch-size <px>', `patch side in pixels at that resolution ${d(D.patchSize)}`, positiveInt)
    .option('--stride <px>', `step between patches ${d('the patch size')}`, positiveInt)
    .option('--background', 'drop patches that are mostly empty glass')
    .option(
      '--background-brightness <v>',
      `background: luminance above which a grey pixel is glass ${d(D.backgroundBrightness)}`,
      Number,
    )
    .option(
      '--background-max-fraction <f>',
      `background: largest share of glass a kept patch may have ${d(D.backgroundMaxFraction)}`,
      fraction,
    )
    .option(
      '--max-upsampling <x>',
      `most an image may be enlarged to reach the resolution; refused before any work beyond it, and the package allows predict the same ${d(D.maxUpsampling)}`,
      positiveNumber,
    );
}

/**
 * The recipe a command was given: `base` (a preset's or a config file's recipe) with the recipe
 * flags given on the command line on top. Validation and defaults are the recipe module's.
 */
export function recipeFromCommand(command: Command, base: PrepareRecipeInput = {}): PrepareRecipeInput {
  const options = command.opts<Record<string, unknown>>();
  const given: Record<string, unknown> = {};
  for (const key of PREPARE_RECIPE_KEYS) {
    if (command.getOptionValueSource(key) === 'cli') given[key] = options[key];
  }
  if (options.ownScale === true) {
    delete given.mpp;
    given.targetScale = null;
  }
  return { ...yieldResolution(base, given), ...given };
}

/** Splits a config file of a recipe-taking command into the recipe and the command's own options. */
export function splitRecipeKeys(file: Record<string, unknown>): {
  recipe: Record<string, unknown>;
  rest: Record<string, unknown>;
} {
  const recipe: Record<string, unknown> = {};
  const rest: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(file)) {
    if ((PREPARE_RECIPE_KEYS as readonly string[]).includes(key)) recipe[key] = value;
    else rest[key] = value;
  }
  return { recipe, rest };
}
