/**
 * `pathotype run`: the whole workflow for a preset (data, split, prepare, train, evaluate) in
 * one command. Each stage is skipped when its result is already there for the same inputs, and
 * training continues from its last checkpoint, so running it again after an interruption
 * resumes stage by stage.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { ConfigError } from '../errors.js';
import type { Catalog } from '../data/catalog.js';
import { fetchLymphoma } from '../data/fetch.js';
import { parseGroupRule } from '../data/grouping.js';
import { importImages } from '../data/import.js';
import { prepare, type PrepareReport } from '../data/prepare.js';
import { createSplit } from '../data/split.js';
import type { Workspace } from '../data/workspace.js';
import { resolveWeights } from '../engine/weights/registry.js';
import { evaluateModel, type EvaluationReport } from '../evaluate/evaluate.js';
import { merge, resolveTrainConfig, type TrainConfig } from './config.js';
import { PRESETS, presetNames, type Preset } from './presets.js';
import { modelDirFor, train, type TrainProgress, type TrainResult } from './trainer.js';

export interface RunOptions {
  preset: string;
  /** Images to import (folder or tarball); 'fetch' downloads the official set; absent: the catalog as it is. */
  data?: string;
  /** Model and store name; default the preset's. */
  name?: string;
  /** Overrides merged into the preset (a config file's content): { split, prepare, train, groupBy }. */
  overrides?: Record<string, unknown>;
  fresh?: boolean;
  onStage?: (stage: string, detail: string) => void;
  onTrainProgress?: (progress: TrainProgress) => void;
  onNotice?: (message: string) => void;
}

export interface RunResult {
  preset: Preset;
  prepare: PrepareReport;
  train: TrainResult;
  evaluation: { report: EvaluationReport; json: string; html: string };
  seconds: number;
}

const OVERRIDE_KEYS = ['groupBy', 'split', 'prepare', 'train'];

export function resolvePreset(name: string, overrides: Record<string, unknown> = {}): Preset {
  const base = PRESETS[name];
  if (!base) throw new ConfigError(`unknown preset '${name}' (${presetNames().join(', ')})`);
  const unknown = Object.keys(overrides).filter((k) => !OVERRIDE_KEYS.includes(k));
  if (unknown.length > 0)
    throw new ConfigError(
      `unknown run config key(s) ${unknown.join(', ')}; known: ${OVERRIDE_KEYS.join(', ')}`,
    );
  return merge(base, overrides);
}

export async function runPipeline(
  catalog: Catalog,
  workspace: Workspace,
  options: RunOptions,
): Promise<RunResult> {
  const started = performance.now();
  const preset = resolvePreset(options.preset, options.overrides);
  const name = options.name ?? preset.name;
  const stage = options.onStage ?? (() => undefined);

  // 1. Data.
  if (options.data === 'fetch') {
    stage('data', 'downloading the IICBU 2008 lymphoma set');
    await fetchLymphoma(catalog, workspace, { groupBy: parseGroupRule('sj') });
  } else if (options.data) {
    stage('data', `importing ${options.data}`);
    const report = await importImages(catalog, workspace, options.data, {
      groupBy: parseGroupRule(preset.groupBy),
    });
    stage('data', `${report.added} added, ${report.unchanged} unchanged, ${report.skipped.length} skipped`);
  } else if (catalog.images().length === 0) {
    throw new ConfigError(
      'the catalog is empty: give --data DIR|TARBALL, or --data fetch to download the set',
    );
  }

  // 2. Split: made again only when its parameters changed.
  const existing = catalog.split(name);
  if (!existing || JSON.stringify(existing.params) !== JSON.stringify(preset.split) || options.fresh) {
    createSplit(catalog, name, preset.split);
    stage('split', `created split '${name}'`);
  } else {
    stage('split', `split '${name}' unchanged`);
  }

  // 3. Prepare: reuses an identical store.
  const recipe = preset.prepare;
  const prepared = await prepare(catalog, workspace, {
    name,
    split: name,
    normalisation: {
      method: recipe.normalisation,
      ...(recipe.reference ? { reference: recipe.reference } : {}),
    },
    targetScale: recipe.targetScale,
    tiles: recipe.tiles,
    ...(recipe.background ? { background: recipe.background } : {}),
    ...(options.fresh ? { force: true } : {}),
  });
  stage(
    'prepare',
    `${prepared.reused ? 'reused' : 'made'} ${prepared.manifest.count} patches in ${prepared.seconds.toFixed(1)} s`,
  );

  // 4. Train: continues from the checkpoint of an interrupted run.
  const input = { ...preset.train, name, store: name } as Record<string, unknown>;
  if (typeof input.pretrained === 'string')
    input.pretrained = resolveWeights(input.pretrained, workspace.root);
  const config: TrainConfig = resolveTrainConfig(input);
  const trained = await train(workspace, config, {
    resume: options.fresh ? false : 'auto',
    allowMissingPretrained: preset.allowMissingPretrained ?? false,
    ...(options.onTrainProgress ? { onProgress: options.onTrainProgress } : {}),
    ...(options.onNotice ? { onNotice: options.onNotice } : {}),
  });
  stage(
    'train',
    `${trained.resumedFrom > 0 ? `resumed after epoch ${trained.resumedFrom}, ` : ''}done in ${trained.seconds.toFixed(0)} s`,
  );

  // 5. Evaluate on the held-out cases.
  const packageDir = modelDirFor(workspace, name);
  if (!existsSync(path.join(packageDir, 'model.json')))
    throw new ConfigError(`training wrote no package at ${packageDir}`);
  const evaluation = await evaluateModel(catalog, workspace, packageDir, { bf16: config.bf16 });
  stage(
    'evaluate',
    `image accuracy ${(evaluation.report.imageMajority.accuracy * 100).toFixed(1)}% on ${evaluation.report.images.length} test images`,
  );
  return {
    preset,
    prepare: prepared,
    train: trained,
    evaluation,
    seconds: (performance.now() - started) / 1000,
  };
}
