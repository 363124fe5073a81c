/**
 * A slide recipe's way from slide to features: the preprocessing and frozen base a preset (with
 * its overrides) names, opened once per process. `data features`, `run` on a slide manifest and
 * each feature worker open it alike, so they cut and extract alike.
 */
import type { SlideRecord } from '../acquire/catalog.js';
import { availableCores } from '../cpu.js';
import { ConfigError } from '../errors.js';
import { setThreads } from '../engine/network.js';
import { resolveBf16 } from '../engine/precision.js';
import type { NetworkSpec } from '../engine/spec.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { slidePreprocess } from '../prepare/prepare.js';
import {
  isFrozenBaseRecipe,
  openFrozenBase,
  type FrozenBase,
  type FrozenBaseRecipe,
} from '../train/frozen-base.js';
import { recipeSpec } from '../train/run.js';
import type { Workspace } from '../workspace.js';
import type { Preset } from './presets.js';
import { fetchPresetWeights, recipeTrainConfig } from './run.js';

/** A recipe's way from slide to features, open: close it to free the base's runner. */
export interface SlideEncoder {
  preprocess: PreprocessConfig;
  base: FrozenBase;
  config: FrozenBaseRecipe;
  spec: NetworkSpec;
  classes: string[];
  close(): Promise<void>;
}

/** The classes of a set of slides: their labels, sorted. */
export function slideClasses(slides: readonly SlideRecord[]): string[] {
  return [...new Set(slides.map((s) => s.label))].sort();
}

/**
 * A slide recipe's training configuration for the model `name`, as this machine runs it: only
 * frozen-base recipes learn from slides (refused before any work otherwise).
 */
export function slideRecipeConfig(
  preset: Preset,
  name: string,
  workspace: Workspace,
  onNotice?: (message: string) => void,
): FrozenBaseRecipe {
  const recipe = recipeTrainConfig(preset, name, 'slides', workspace);
  const config = { ...recipe, bf16: resolveBf16(recipe.bf16, onNotice) };
  if (!isFrozenBaseRecipe(config))
    throw new ConfigError(
      `the recipe ${preset.name} fine-tunes its network (method: ${config.method}) on patches of field images; ` +
        'slides train a frozen base on their tile features: use method: probe or mil (--preset resnet50-probe or resnet50-mil)',
    );
  return config;
}

/**
 * The recipe's preprocessing and frozen base (its weights resolved in `workspace`, fetched there
 * when npm publishes them), for the model `name` (default the preset's).
 */
export async function openSlideEncoder(
  workspace: Workspace,
  preset: Preset,
  classes: readonly string[],
  options: {
    name?: string;
    onNotice?: (message: string) => void;
    /** Stages (the weights fetched), as `run` prints them; default: as notices. */
    onStage?: (stage: string, detail: string) => void;
  } = {},
): Promise<SlideEncoder> {
  const { onNotice } = options;
  const config = slideRecipeConfig(preset, options.name ?? preset.name, workspace, onNotice);
  const preprocess = await slidePreprocess(preset.prepare);
  await fetchPresetWeights(
    preset,
    workspace,
    options.onStage ?? ((stage, detail) => onNotice?.(`${stage}: ${detail}`)),
  );
  // As training does: the recipe's threads, else every core this process may use.
  setThreads(config.threads > 0 ? config.threads : availableCores());
  const spec = recipeSpec(config, preprocess.tiles.patchSize, classes.length);
  const base = await openFrozenBase(config, spec, preprocess, classes, 'recipe');
  return {
    preprocess,
    base,
    config,
    spec,
    classes: [...classes],
    close: () => base.features.runner.close(),
  };
}
