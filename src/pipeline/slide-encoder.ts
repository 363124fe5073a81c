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
import { resolveWeights } from '../engine/weights/registry.js';
import { buildSpec } from '../engine/zoo.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { slidePreprocessConfig } from '../prepare/prepare.js';
import { resolveTrainConfig } from '../train/config.js';
import { isFrozenBaseRecipe, openFrozenBase, type FrozenBase } from '../train/frozen-base.js';
import type { RunConfig } from '../train/run.js';
import type { Workspace } from '../workspace.js';
import type { Preset } from './presets.js';
import { fetchPresetWeights } from './run.js';

/** A recipe's way from slide to features, open: close it to free the base's runner. */
export interface SlideEncoder {
  preprocess: PreprocessConfig;
  base: FrozenBase;
  config: RunConfig;
  spec: NetworkSpec;
  classes: string[];
  close(): Promise<void>;
}

/** The classes of a set of slides: their labels, sorted. */
export function slideClasses(slides: readonly SlideRecord[]): string[] {
  return [...new Set(slides.map((s) => s.label))].sort();
}

/** The recipe's preprocessing and frozen base (its weights resolved in `workspace`, fetched there when npm publishes them). */
export async function openSlideEncoder(
  workspace: Workspace,
  preset: Preset,
  classes: readonly string[],
  onNotice?: (message: string) => void,
): Promise<SlideEncoder> {
  const preprocess = await slidePreprocessConfig(preset.prepare);
  await fetchPresetWeights(preset, workspace, (stage, detail) => onNotice?.(`${stage}: ${detail}`));
  const input = { ...preset.train, name: preset.name, store: 'slides' } as Record<string, unknown>;
  if (typeof input.pretrained === 'string') input.pretrained = resolveWeights(input.pretrained, workspace);
  const recipe = resolveTrainConfig(input);
  const config: RunConfig = { ...recipe, bf16: resolveBf16(recipe.bf16, onNotice) };
  if (!isFrozenBaseRecipe(config))
    throw new ConfigError(
      `slides are learnt from frozen features: the recipe's method must be probe or mil (it is ${config.method})`,
    );
  // As training does: the recipe's threads, else every core this process may use.
  setThreads(config.threads > 0 ? config.threads : availableCores());
  const spec = buildSpec(config.architecture, {
    inputSize: preprocess.tiles.patchSize,
    alpha: config.alpha,
    depth: config.depth,
    head: { classes: classes.length, ...config.head },
  });
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
