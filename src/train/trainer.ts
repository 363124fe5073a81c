/**
 * `pathotype train`: fine-tunes a zoo network on a patch store, phase by phase (e.g. the base
 * frozen first, then the top blocks), with shuffled, optionally class-balanced batches, flips,
 * quarter turns and stain jitter, a learning-rate schedule, image-level validation with early
 * stopping, and an atomic checkpoint after every epoch from which `--resume` continues exactly.
 * The result is a model package. The frozen-base recipes (probe, MIL) live in frozen-base.ts.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';

import { availableCores } from '../cpu.js';
import { ConfigError, PathotypeError } from '../errors.js';
import { augmentStain } from '../image/augment.js';
import { PatchStore, type StoredImage } from '../prepare/patch-store.js';
import { ensureDir, modelDirFor, runDirFor, type Workspace } from '../workspace.js';
import { manualSeed, Network, setThreads, type NamedTensor } from '../engine/network.js';
import { seededRandom } from '../random.js';
import { loadPretrained, readPretrained, type PretrainedReport } from '../engine/weights/load.js';
import type { NetworkSpec } from '../engine/spec.js';
import { HEAD_PREFIXES } from '../engine/zoo.js';
import { predictStoredImages } from '../predict/stored-patches.js';
import { addonRunner } from '../engine/inference-engine.js';
import { readManifest, writePackage, type EpochRecord, type ModelManifest } from '../model/package.js';
import { precisionOf, resolveBf16 } from '../engine/precision.js';
import { loadCheckpoint, saveCheckpoint, type CheckpointState } from './checkpoint.js';
import type { PhaseConfig, TrainConfig } from './config.js';
import { isFrozenBaseRecipe, trainFrozenBasePackage } from './frozen-base.js';
import {
  learnedFrom,
  packageBasics,
  recipeSpec,
  storeSource,
  type RunConfig,
  type TrainOptions,
  type TrainResult,
} from './run.js';
import { epochOrder, inverseFrequencyWeights } from './sampler.js';
import { learningRateAt } from './schedule.js';
import { withTrainingReference } from './training-reference.js';

export type { TrainOptions, TrainProgress, TrainResult } from './run.js';

function trainablePrefixes(trainable: PhaseConfig['trainable']): readonly string[] {
  if (trainable === 'all') return [''];
  if (trainable === 'head') return HEAD_PREFIXES;
  return trainable;
}

function phaseAt(
  phases: readonly PhaseConfig[],
  epoch: number,
): { index: number; phase: PhaseConfig; start: number } {
  let start = 0;
  for (const [index, phase] of phases.entries()) {
    if (epoch < start + phase.epochs) return { index, phase, start };
    start += phase.epochs;
  }
  const last = phases.length - 1;
  return { index: last, phase: phases[last] as PhaseConfig, start: start - (phases[last]?.epochs ?? 0) };
}

async function configurePhase(network: Network, phase: PhaseConfig): Promise<void> {
  await network.freeze(['']);
  await network.unfreeze(trainablePrefixes(phase.trainable));
  if (phase.optimizer === 'sgd') {
    await network.configureOptimizer({
      type: 'sgd',
      learningRate: phase.learningRate,
      momentum: phase.momentum,
      weightDecay: phase.weightDecay,
    });
  } else {
    await network.configureOptimizer({
      type: phase.optimizer,
      learningRate: phase.learningRate,
      weightDecay: phase.weightDecay,
    });
  }
}

/** A test's request to stop after some epochs of this call, as an interrupted run would. */
function stopIfAsked(options: TrainOptions, ranThisCall: number): void {
  if (options.stopAfterEpochs !== undefined && ranThisCall >= options.stopAfterEpochs)
    throw new PathotypeError(
      'ERR_TRAIN_STOPPED',
      `stopped after ${ranThisCall} epochs as asked; --resume continues`,
    );
}

/** The network the recipe builds on this store, and the fingerprint a checkpoint must match. */
function networkOf(config: TrainConfig, store: PatchStore): { spec: NetworkSpec; fingerprint: string } {
  const spec = recipeSpec(config, store.patchSize, store.manifest.classes.length);
  // Threads change the speed, not the result: a checkpoint fits whatever the thread count.
  const fingerprint = createHash('sha1')
    .update(JSON.stringify({ config: { ...config, threads: 0 }, store: store.manifest.fingerprint }))
    .digest('hex');
  return { spec, fingerprint };
}

export async function train(
  workspace: Workspace,
  recipe: TrainConfig,
  options: TrainOptions = {},
): Promise<TrainResult> {
  const started = performance.now();
  const config: RunConfig = { ...recipe, bf16: resolveBf16(recipe.bf16, options.onNotice) };
  setThreads(config.threads > 0 ? config.threads : availableCores());
  const store = PatchStore.open(path.join(workspace.patchesDir, config.store));
  try {
    // The recipe, not this machine's precision: a run resumes on a machine of the other kind.
    const { spec, fingerprint } = networkOf(recipe, store);
    manualSeed(config.seed);
    if (isFrozenBaseRecipe(config))
      return await trainFrozenBasePackage({ workspace, config, store, spec, fingerprint, started }, options);

    const network = await Network.create(spec);
    const { pretrained, syntheticWeights } = await startingWeights(network, config, options);
    const runDir = ensureDir(runDirFor(workspace, config.name));
    const restored = await restore(
      network,
      runDir,
      fingerprint,
      options.resume,
      !options.group || options.group.rank === 0,
    );
    if (options.group) await network.syncFrom(options.group, 0);
    const { state } = restored;
    let { best, optimizerState } = restored;
    const resumedFrom = state.epochsDone;
    const plan = trainingPlan(store, config, options.group?.worldSize ?? 1);
    const writer = !options.group || options.group.rank === 0;

    let configuredPhase = -1;
    let ranThisCall = 0;
    let stoppedEarly = state.stopped;
    const rates: number[] = [];
    while (state.epochsDone < plan.epochs && !state.stopped) {
      const epoch = state.epochsDone;
      const at = phaseAt(config.phases, epoch);
      if (configuredPhase !== at.index) {
        await configurePhase(network, at.phase);
        // Mid-phase resume: the optimizer continues where it stopped.
        if (optimizerState && epoch > at.start) await network.loadOptimizerState(optimizerState);
        optimizerState = null;
        configuredPhase = at.index;
      }
      const record = await runEpoch(network, store, config, plan, epoch, at, options);
      rates.push(record.patchesPerSecond);
      let bestChanged = false;
      if (plan.validationImages.length > 0) {
        await validate(network, store, config, plan, record);
        bestChanged = judgeEpoch(state, record, epoch, config.patience);
        if (bestChanged) best = await network.exportTensors();
        if (state.stopped) stoppedEarly = true;
      }
      state.history.push(record);
      state.epochsDone = epoch + 1;
      if (writer) {
        const weights = await network.exportTensors();
        const optimizer = await network.saveOptimizerState();
        await saveCheckpoint(runDir, { state, weights, best, optimizer }, bestChanged);
      }
      options.onEpoch?.(record);
      ranThisCall++;
      if (state.epochsDone < plan.epochs) stopIfAsked(options, ranThisCall);
    }

    const packageDir = modelDirFor(workspace, config.name);
    const result = (manifest: ModelManifest): TrainResult => ({
      packageDir,
      manifest,
      resumedFrom,
      stoppedEarly,
      pretrained,
      seconds: (performance.now() - started) / 1000,
    });
    if (resumedFrom === plan.epochs || (state.stopped && ranThisCall === 0)) {
      // Finished before: the package of that run stands, unless it is missing or another run's.
      const existing = existsSync(path.join(packageDir, 'model.json')) ? readManifest(packageDir) : undefined;
      if (existing?.training.fingerprint === fingerprint) return result(existing);
    }
    const manifest = trainedManifest(packageDir, config, spec, store, {
      fingerprint,
      state,
      stoppedEarly,
      rates,
      pretrained,
      syntheticWeights,
    });
    if (!writer) return result(manifest);
    await writePackage(packageDir, manifest, best ?? (await network.exportTensors()));
    return await withTrainingReference(result(manifest), workspace, learnedFrom(store), options);
  } finally {
    await store.close();
  }
}

/** The package's manifest after the epochs of `state`. */
function trainedManifest(
  packageDir: string,
  config: RunConfig,
  spec: NetworkSpec,
  store: PatchStore,
  run: {
    fingerprint: string;
    state: CheckpointState;
    stoppedEarly: boolean;
    rates: readonly number[];
    pretrained: PretrainedReport | null;
    syntheticWeights: boolean;
  },
): ModelManifest {
  const { fingerprint, state, stoppedEarly, rates, pretrained, syntheticWeights } = run;
  return {
    ...packageBasics(packageDir, config, spec, storeSource(config, store)),
    training: {
      ...config,
      fingerprint,
      precision: precisionOf(config.bf16),
      bestEpoch: state.bestEpoch,
      epochsRun: state.epochsDone,
      stoppedEarly,
      meanPatchesPerSecond: rates.length > 0 ? rates.reduce((a, r) => a + r, 0) / rates.length : null,
      pretrainedLoaded: pretrained?.loaded ?? 0,
    },
    history: state.history,
    metrics:
      state.bestValidation === null
        ? {}
        : {
            validationImageAccuracy: state.history.find((h) => h.epoch === state.bestEpoch)
              ?.validationImageAccuracy,
          },
    ...(syntheticWeights ? { syntheticWeights: true } : {}),
  };
}

/**
 * Keeps the best epoch by validation (ties go to the later epoch: at equal image accuracy the
 * better patch accuracy wins) and counts the epochs without improvement for early stopping.
 * Returns whether this epoch is the new best.
 */
function judgeEpoch(state: CheckpointState, record: EpochRecord, epoch: number, patience: number): boolean {
  const score = (record.validationImageAccuracy ?? 0) + (record.validationPatchAccuracy ?? 0) * 1e-3;
  if (state.bestValidation === null || score >= state.bestValidation) {
    state.bestValidation = score;
    state.bestEpoch = epoch + 1;
    state.epochsWithoutImprovement = 0;
    return true;
  }
  state.epochsWithoutImprovement++;
  if (patience > 0 && state.epochsWithoutImprovement >= patience) state.stopped = true;
  return false;
}

/** ImageNet weights into the network; random ones (said so in the package) only when allowed. */
async function startingWeights(
  network: Network,
  config: TrainConfig,
  options: TrainOptions,
): Promise<{ pretrained: PretrainedReport | null; syntheticWeights: boolean }> {
  if (!config.pretrained) return { pretrained: null, syntheticWeights: false };
  if (existsSync(config.pretrained)) {
    const pretrained = await loadPretrained(
      network,
      await readPretrained(config.pretrained),
      config.pretrained,
    );
    return { pretrained, syntheticWeights: false };
  }
  if (!options.allowMissingPretrained)
    throw new ConfigError(
      `the pretrained weights ${config.pretrained} do not exist (pathotype weights fetch ${config.architecture})`,
    );
  options.onNotice?.(
    `pretrained weights ${config.pretrained} are not here: training runs on RANDOM weights, and the package says so ` +
      `(get the real file with 'pathotype weights fetch ${config.architecture}')`,
  );
  return { pretrained: null, syntheticWeights: true };
}

/** The last checkpoint of this configuration, or a fresh start (an unusable one is removed). */
async function restore(
  network: Network,
  runDir: string,
  fingerprint: string,
  resume: TrainOptions['resume'],
  writer: boolean,
): Promise<{ state: CheckpointState; best: NamedTensor[] | null; optimizerState: Uint8Array | null }> {
  const checkpoint = resume ? await loadCheckpoint(runDir) : undefined;
  const fits = checkpoint?.state.configFingerprint === fingerprint;
  if (checkpoint && (fits || resume !== 'auto')) {
    if (!fits)
      throw new ConfigError(
        `the checkpoint in ${runDir} was made with another configuration or patch store: ` +
          'train under a new --name, or without --resume to start over',
      );
    await network.importTensors(checkpoint.weights);
    return { state: checkpoint.state, best: checkpoint.best, optimizerState: checkpoint.optimizer };
  }
  // Only the writing rank clears a checkpoint that does not fit: the others may still read it.
  if (writer) await rm(path.join(runDir, 'checkpoint'), { recursive: true, force: true });
  const state: CheckpointState = {
    epochsDone: 0,
    history: [],
    bestValidation: null,
    bestEpoch: null,
    epochsWithoutImprovement: 0,
    stopped: false,
    configFingerprint: fingerprint,
  };
  return { state, best: null, optimizerState: null };
}

/** What the epochs draw from: the training patches, the validation images, the epoch sizes. */
interface TrainingPlan {
  trainIds: Int32Array;
  validationImages: StoredImage[];
  classOf: (id: number) => number;
  classWeights: number[] | undefined;
  epochs: number;
  perEpoch: number;
  batchesPerEpoch: number;
  /** Ranks sharing each global batch of batchSize x worldSize patches. */
  worldSize: number;
}

function trainingPlan(store: PatchStore, config: TrainConfig, worldSize: number): TrainingPlan {
  const hasSplit = store.images.some((i) => i.partition !== null);
  const trainIds = store.select({ partitions: hasSplit ? ['train'] : [null] });
  if (trainIds.length === 0)
    throw new PathotypeError('ERR_TRAIN', `the patch store '${config.store}' has no training patches`);
  const classOf = (id: number): number => store.classIndices[id] ?? 0;
  const classes = store.manifest.classes.length;
  const perEpoch =
    config.patchesPerEpoch > 0 ? Math.min(config.patchesPerEpoch, trainIds.length) : trainIds.length;
  return {
    trainIds,
    validationImages: store.images.filter((i) => i.partition === 'validation'),
    classOf,
    classWeights:
      config.balance === 'weights' ? inverseFrequencyWeights(trainIds, classOf, classes) : undefined,
    epochs: config.phases.reduce((n, p) => n + p.epochs, 0),
    perEpoch,
    batchesPerEpoch: Math.ceil(perEpoch / (config.batchSize * worldSize)),
    worldSize,
  };
}

/** One epoch of gradient steps, the next batch read while the engine computes this one. */
async function runEpoch(
  network: Network,
  store: PatchStore,
  config: RunConfig,
  plan: TrainingPlan,
  epoch: number,
  at: { index: number; phase: PhaseConfig; start: number },
  options: TrainOptions,
): Promise<EpochRecord> {
  const { phase } = at;
  const rank = options.group?.rank ?? 0;
  // The epoch's order is the same on every rank; the augmentation draws are each rank's own.
  manualSeed(config.seed * 1000 + epoch + rank * 7_919_000);
  const random = seededRandom(config.seed * 7919 + epoch + rank * 104_729);
  const order = epochOrder(plan.trainIds, plan.classOf, store.manifest.classes.length, {
    balance: config.balance === 'sampling',
    limit: plan.perEpoch,
    seed: config.seed * 104729 + epoch,
  });
  const stain = config.augment.stain;
  const stainOn = Object.values(stain).some((v) => (v ?? 0) > 0);
  const pixels = store.patchSize ** 2;
  const { batchesPerEpoch } = plan;
  const epochStart = performance.now();
  let lossSum = 0;
  let correct = 0;
  let seen = 0;
  let learningRate = phase.learningRate;
  // Global batch b spans batchSize x worldSize patches of the order and each rank reads an equal
  // slice; the last one is shared evenly and wraps around, as PyTorch's DistributedSampler pads.
  const globalBatch = config.batchSize * plan.worldSize;
  const read = (b: number): Promise<{ patches: Uint8Array; labels: Int32Array }> => {
    if (plan.worldSize === 1)
      return store.read(order.subarray(b * globalBatch, Math.min(order.length, (b + 1) * globalBatch)));
    const per = Math.ceil(Math.min(globalBatch, order.length - b * globalBatch) / plan.worldSize);
    const ids = Int32Array.from(
      { length: per },
      (_, i) => order[(b * globalBatch + rank * per + i) % order.length] ?? 0,
    );
    return store.read(ids);
  };
  let next = read(0);
  for (let b = 0; b < batchesPerEpoch; b++) {
    const { patches, labels } = await next;
    if (b + 1 < batchesPerEpoch) next = read(b + 1);
    if (stainOn) augmentStain(patches, labels.length, pixels, stain, random);
    learningRate = learningRateAt(phase, epoch - at.start + b / batchesPerEpoch);
    await network.setLearningRate(learningRate);
    const result = await network.trainStep(patches, labels, {
      augment: { flip: config.augment.flip, rotate90: config.augment.rotate90 },
      bf16: config.bf16,
      labelSmoothing: config.labelSmoothing,
      batchNormEval: config.batchNorm === 'frozen',
      ...(plan.classWeights ? { classWeights: plan.classWeights } : {}),
      ...(options.group ? { group: options.group } : {}),
    });
    lossSum += result.loss * result.count;
    correct += result.correct;
    seen += result.count;
    const rate = seen / Math.max((performance.now() - epochStart) / 1000, 1e-6);
    const remaining =
      (batchesPerEpoch - b - 1) * config.batchSize + (plan.epochs - epoch - 1) * plan.perEpoch;
    options.onProgress?.({
      epoch: epoch + 1,
      epochs: plan.epochs,
      phase: at.index + 1,
      batch: b + 1,
      batches: batchesPerEpoch,
      loss: lossSum / seen,
      accuracy: correct / seen,
      learningRate,
      patchesPerSecond: rate,
      etaSeconds: remaining / rate,
    });
  }
  const seconds = (performance.now() - epochStart) / 1000;
  return {
    epoch: epoch + 1,
    phase: at.index + 1,
    learningRate,
    loss: lossSum / seen,
    accuracy: correct / seen,
    seconds,
    patchesPerSecond: seen / seconds,
  };
}

/** Image- and patch-level accuracy on the validation images, by the model's own vote rule. */
async function validate(
  network: Network,
  store: PatchStore,
  config: RunConfig,
  plan: TrainingPlan,
  record: EpochRecord,
): Promise<void> {
  const predictions = await predictStoredImages(addonRunner(network), store, plan.validationImages, {
    rule: config.vote,
    bf16: config.bf16,
  });
  let patchCorrect = 0;
  let patchCount = 0;
  for (const p of predictions) {
    for (const c of p.vote.patchClasses) patchCorrect += c === p.label ? 1 : 0;
    patchCount += p.vote.patchClasses.length;
  }
  record.validationImageAccuracy =
    predictions.filter((p) => p.vote.predicted === p.label).length / predictions.length;
  record.validationPatchAccuracy = patchCorrect / Math.max(1, patchCount);
}
