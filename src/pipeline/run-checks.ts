/**
 * What a run is and whether it can be done, settled before it fetches, splits or prepares
 * anything: its name and label say what it trains (an ONNX encoder's run is not the preset's
 * zoo network), the recipe's geometry is checked on every catalogued image (prepare/geometry.ts),
 * and an encoder is opened and checked against the recipe's patches.
 */
import path from 'node:path';

import type { Catalog } from '../acquire/catalog.js';
import { ConfigError } from '../errors.js';
import { encoderGeometryMismatch, OnnxEncoder, type EncoderConfig } from '../engine/onnx-encoder.js';
import { checkRecipeGeometry } from '../prepare/geometry.js';
import { resolvePrepareRecipe } from '../prepare/recipe.js';
import { resolveTrainConfig } from '../train/config.js';
import type { Preset } from './presets.js';

/** The run's training as it will be resolved (defaults filled). */
function trainingOf(preset: Preset): ReturnType<typeof resolveTrainConfig> {
  return resolveTrainConfig({ ...preset.train, name: preset.name, store: preset.name });
}

/** The run's ONNX encoder, its defaults filled; null for a zoo network. */
export function runEncoder(preset: Preset): EncoderConfig | null {
  return trainingOf(preset).encoder;
}

/** The name a run (its split, stores, models and report) takes when none is given. */
export function defaultRunName(preset: Preset): string {
  const { encoder, method } = trainingOf(preset);
  if (!encoder) return preset.name;
  const stem = path.basename(encoder.onnx).replace(/\.onnx$/i, '');
  return `${stem.replace(/[^A-Za-z0-9_.-]+/g, '-')}-${method}`;
}

/** What a run trains, in its reports: the preset's network, or the encoder that replaced it. */
export function runLabel(preset: Preset): string {
  const { encoder, method, architecture, depth } = trainingOf(preset);
  if (encoder) return `${method} on the ONNX encoder ${path.basename(encoder.onnx)}`;
  return `${method} on ${architecture}${architecture === 'resnet50' ? ` to ${depth}` : ''}`;
}

/** Every check a run can make before any work; the first failure throws. */
export async function checkRunBeforeWork(catalog: Catalog, preset: Preset): Promise<void> {
  checkRecipeGeometry(catalog, preset.prepare);
  const encoder = runEncoder(preset);
  if (!encoder) return;
  const recipe = resolvePrepareRecipe(preset.prepare);
  const mismatch = encoderGeometryMismatch(encoder, recipe.patchSize, recipe.mpp);
  if (mismatch) throw new ConfigError(mismatch.replace('the patches are', "the recipe's patches are"));
  // Opened once here so that a wrong file, input or output fails now, not after the first fold's prepare.
  const opened = await OnnxEncoder.open(encoder);
  await opened.close();
}
