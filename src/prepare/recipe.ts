/**
 * The preparation recipe: how catalogued images become patches. One type and one JSON schema
 * serve `prepare` (its flags, or the same keys in its --config file) and `run` (the `prepare`
 * section of a preset or a config file). The keys are the flags' camelCase names, unknown keys
 * are errors naming the key, and every default is written here once.
 */
import { schemaValidator } from '../config.js';
import { ConfigError } from '../errors.js';
import { mppOfScale, ORIGINAL_MPP, scaleOfMpp } from '../image/scale.js';
import {
  NORMALISATION_METHODS,
  type NormalisationMethod,
  type NormaliserOptions,
} from '../image/normalise.js';
import { MAX_UPSAMPLING } from '../image/resampling.js';
import { DEFAULT_BACKGROUND, type BackgroundConfig, type TileConfig } from '../image/tiling.js';

export interface PrepareRecipe {
  normalisation: NormalisationMethod;
  /** Reinhard/Macenko: a path, a catalogued CLASS/file name, or 'dataset'. */
  reference?: string;
  percentileLow: number;
  percentileHigh: number;
  /** Microns per pixel to tile at (null: each image at its own); derived from targetScale when only that is given. */
  mpp: number | null;
  /** The same resolution as a scale relative to the original 1388x1040 release (0.32 um/px): an accepted alias. */
  targetScale: number | null;
  /** Patch side in pixels at the target scale: the one geometry name from flag to network input. */
  patchSize: number;
  /** Step between patches; the patch size (no overlap) when left out. */
  stride: number;
  /** Drop patches that are mostly empty glass. */
  background: boolean;
  backgroundBrightness: number;
  backgroundMaxFraction: number;
  /** Most an image may be enlarged to reach the resolution (image/resampling.ts); its package carries it to predict. */
  maxUpsampling: number;
}

export type PrepareRecipeInput = Partial<PrepareRecipe>;

/** KNIME's recipe: percentile stretch, 64x64 patches at the original scale, every patch kept. */
export const PREPARE_DEFAULTS: Omit<PrepareRecipe, 'stride' | 'reference' | 'mpp'> = {
  normalisation: 'percentile',
  percentileLow: 1,
  percentileHigh: 99,
  targetScale: 1,
  patchSize: 64,
  background: DEFAULT_BACKGROUND.enabled,
  backgroundBrightness: DEFAULT_BACKGROUND.brightness,
  backgroundMaxFraction: DEFAULT_BACKGROUND.maxFraction,
  maxUpsampling: MAX_UPSAMPLING,
};

export const PREPARE_RECIPE_KEYS = [
  'normalisation',
  'reference',
  'percentileLow',
  'percentileHigh',
  'mpp',
  'targetScale',
  'patchSize',
  'stride',
  'background',
  'backgroundBrightness',
  'backgroundMaxFraction',
  'maxUpsampling',
] as const satisfies readonly (keyof PrepareRecipe)[];

export const PREPARE_RECIPE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  properties: {
    normalisation: { enum: NORMALISATION_METHODS },
    reference: { type: 'string', minLength: 1 },
    percentileLow: { type: 'number', minimum: 0, maximum: 100 },
    percentileHigh: { type: 'number', minimum: 0, maximum: 100 },
    mpp: { anyOf: [{ type: 'number', minimum: 0.02, maximum: 100 }, { type: 'null' }] },
    targetScale: { anyOf: [{ type: 'number', exclusiveMinimum: 0, maximum: 16 }, { type: 'null' }] },
    patchSize: { type: 'integer', minimum: 4, maximum: 4096 },
    stride: { type: 'integer', minimum: 1, maximum: 4096 },
    background: { type: 'boolean' },
    backgroundBrightness: { type: 'number', minimum: 0, maximum: 255 },
    backgroundMaxFraction: { type: 'number', minimum: 0, maximum: 1 },
    maxUpsampling: { type: 'number', minimum: 1, maximum: 16 },
  },
} as const;

const validate: (input: unknown) => asserts input is PrepareRecipeInput = schemaValidator(
  PREPARE_RECIPE_SCHEMA,
  'preparation recipe',
);

/**
 * `base` with the resolution taken out when `over` states one, in either unit: a config that
 * says `targetScale` replaces a preset's `mpp` rather than contradicting it.
 */
export function yieldResolution(base: PrepareRecipeInput, over: Record<string, unknown>): PrepareRecipeInput {
  if (!('mpp' in over) && !('targetScale' in over)) return base;
  const rest = { ...base };
  delete rest.mpp;
  delete rest.targetScale;
  return rest;
}

/** Validates a (partial) recipe and fills in every default. */
export function resolvePrepareRecipe(input: unknown = {}): PrepareRecipe {
  validate(input);
  const { mpp, ...rest } = input;
  const filled = { ...PREPARE_DEFAULTS, ...rest };
  if (mpp !== undefined) {
    const fromMpp = mpp === null ? null : scaleOfMpp(mpp);
    const disagrees =
      rest.targetScale !== undefined &&
      (rest.targetScale === null || fromMpp === null
        ? rest.targetScale !== fromMpp
        : Math.abs(rest.targetScale - fromMpp) / fromMpp > 1e-3);
    if (disagrees)
      throw new ConfigError(
        `the recipe gives mpp ${String(mpp)} and targetScale ${String(rest.targetScale)}, which disagree ` +
          `(targetScale = ${ORIGINAL_MPP} / mpp): give one of them`,
      );
    filled.targetScale = fromMpp;
  }
  return { ...filled, mpp: mppOfScale(filled.targetScale), stride: input.stride ?? filled.patchSize };
}

/** The parts of a recipe that the stages below take. */
export function recipeParts(recipe: PrepareRecipe): {
  normalisation: NormaliserOptions & { reference?: string };
  targetScale: number | null;
  tiles: TileConfig;
  background: BackgroundConfig;
  maxUpsampling: number;
} {
  return {
    normalisation: {
      method: recipe.normalisation,
      percentiles: [recipe.percentileLow, recipe.percentileHigh],
      ...(recipe.reference ? { reference: recipe.reference } : {}),
    },
    targetScale: recipe.targetScale,
    tiles: { patchSize: recipe.patchSize, stride: recipe.stride },
    background: {
      enabled: recipe.background,
      brightness: recipe.backgroundBrightness,
      maxFraction: recipe.backgroundMaxFraction,
    },
    maxUpsampling: recipe.maxUpsampling,
  };
}
