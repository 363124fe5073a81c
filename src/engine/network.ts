/**
 * A trainable network on the libtorch engine. Validates every argument in TypeScript, then
 * hands one plain request to the addon, which runs it off the event loop. Calls on one network
 * run in the order they were made.
 */
import { EngineError, EngineInputError, isErrorCode, PathotypeError } from '../errors.js';
import type { ProcessGroup } from './distributed.js';
import { loadEngine, type NativeNetwork, type NativeOptimizerConfig } from './native.js';
import { resolveSpec, type NetworkSpec, type ResolvedSpec } from './spec.js';

export interface NamedTensor {
  name: string;
  shape: readonly number[];
  data: Float32Array;
}

export interface ExportedTensor extends NamedTensor {
  /** A running statistic (batch norm), not a learned parameter. */
  buffer: boolean;
  trainable: boolean;
}

export interface ImportReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

export interface StepResult {
  loss: number;
  correct: number;
  count: number;
  /** Milliseconds in the data-parallel group's collectives (0 without a group). */
  syncMs: number;
}

export interface AugmentOptions {
  /** Random horizontal mirror per patch (with rotate90: all eight dihedral transforms). */
  flip?: boolean;
  /** Random quarter turns per patch (half turns only for non-square patches). */
  rotate90?: boolean;
}

export interface TrainStepOptions {
  augment?: AugmentOptions;
  /** bfloat16 autocast for the forward pass, where the CPU has bf16 instructions. */
  bf16?: boolean;
  /** Batch norms whose weights are frozen keep their running statistics (as Keras does). Default true. */
  frozenBatchNormEval?: boolean;
  /** Every batch norm uses its running statistics while training (fine-tuning with small batches). */
  batchNormEval?: boolean;
  labelSmoothing?: number;
  /** One weight per class for the loss; for imbalanced classes. */
  classWeights?: readonly number[];
  /** Data-parallel training: gradients averaged across the group, buffers from rank 0. */
  group?: ProcessGroup;
}

/** The train-step defaults, written once: the addon reads every option as given. */
export const TRAIN_STEP_DEFAULTS = {
  flip: false,
  rotate90: false,
  bf16: false,
  frozenBatchNormEval: true,
  batchNormEval: false,
  labelSmoothing: 0,
} as const;

/** PyTorch's optimizer defaults, filled in before the addon sees a config. */
export const OPTIMIZER_DEFAULTS = {
  momentum: 0,
  nesterov: false,
  weightDecay: 0,
  beta1: 0.9,
  beta2: 0.999,
  epsilon: 1e-8,
} as const;

export type OptimizerConfig =
  | { type: 'sgd'; learningRate: number; momentum?: number; nesterov?: boolean; weightDecay?: number }
  | {
      type: 'adam' | 'adamw';
      learningRate: number;
      beta1?: number;
      beta2?: number;
      epsilon?: number;
      weightDecay?: number;
    };

function wrapNativeError(error: unknown): PathotypeError {
  if (error instanceof PathotypeError) return error;
  const message = error instanceof Error ? error.message : String(error);
  const code = (error as { code?: unknown } | null)?.code;
  if (code === 'ERR_ENGINE_INPUT') return new EngineInputError(message, { cause: error });
  return new EngineError(isErrorCode(code) ? code : 'ERR_ENGINE', message, { cause: error });
}

/** The fields that are set: an explicit undefined must not hide a default. */
function definedOnly<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}

/** A collective that failed: another rank died or left, or the group's timeout passed. */
function groupFailure(error: unknown, rank: number): PathotypeError {
  if (error instanceof PathotypeError && error.code !== 'ERR_ENGINE') return error;
  const message = error instanceof Error ? error.message : String(error);
  return new EngineError(
    'ERR_GROUP',
    `rank ${rank}: the data-parallel step failed (another rank failed or left, or the group timed out): ${message}`,
    { cause: error },
  );
}

function checkLearningRate(learningRate: number): void {
  if (!Number.isFinite(learningRate) || learningRate <= 0) {
    throw new EngineInputError(`the learning rate must be a positive number (got ${learningRate})`);
  }
}

function checkRange(value: number | undefined, what: string, min: number, max: number): void {
  if (value !== undefined && !(Number.isFinite(value) && value >= min && value <= max)) {
    throw new EngineInputError(`${what} must be between ${min} and ${max} (got ${value})`);
  }
}

function predictOptions(options: { bf16?: boolean; raw?: boolean }): { bf16: boolean; raw: boolean } {
  return { bf16: options.bf16 ?? false, raw: options.raw ?? false };
}

export class Network {
  readonly spec: ResolvedSpec;
  readonly #native: NativeNetwork;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(spec: ResolvedSpec, native: NativeNetwork) {
    this.spec = spec;
    this.#native = native;
  }

  /** Builds the network off the event loop; weights start from Keras-like random initialisation. */
  static async create(spec: NetworkSpec): Promise<Network> {
    const { resolved, native } = resolveSpec(spec);
    try {
      return new Network(resolved, await loadEngine().createNetwork(native));
    } catch (error) {
      throw wrapNativeError(error);
    }
  }

  /** Values in one input image (bytes of uint8 pixels), or in one instance of a bag network's bags. */
  get imageBytes(): number {
    const { height, width, channels, bag } = this.spec.input;
    return height * (bag ? 1 : width) * channels;
  }

  /** Runs `call` after every earlier call on this network, and turns native errors into ours. */
  #enqueue<T>(call: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(call, call);
    this.#queue = run.catch(() => undefined);
    return run.catch((error: unknown) => {
      throw wrapNativeError(error);
    });
  }

  /**
   * The native shape of a batch: whole images, or for a bag network (input.bag) bags of
   * `bagSize` instances each (all of them in one bag when absent).
   */
  #shape(batch: Uint8Array | Float32Array, bagSize?: number): number[] {
    if (!(batch instanceof Uint8Array) && !(batch instanceof Float32Array))
      throw new EngineInputError(
        'the batch must be a Uint8Array of NHWC pixels or a Float32Array of NHWC values',
      );
    const { height, width, channels, bag } = this.spec.input;
    const unit = this.imageBytes;
    if (batch.length === 0 || batch.length % unit !== 0) {
      throw new EngineInputError(
        `the batch has ${batch.length} values, not a whole number of ${height}x${bag ? 1 : width}x${channels} ${bag ? 'instances' : 'images'}`,
      );
    }
    const count = batch.length / unit;
    if (!bag) return [count, height, width, channels];
    const size = bagSize ?? count;
    if (!Number.isInteger(size) || size < 1 || count % size !== 0)
      throw new EngineInputError(`${count} instances do not make whole bags of ${size}`);
    return [count / size, height, size, channels];
  }

  /**
   * One optimisation step on an NHWC batch (one bag for a bag network, `labels` holding its one
   * label); returns the mean loss and the count correct.
   */
  async trainStep(
    batch: Uint8Array | Float32Array,
    labels: Int32Array,
    options: TrainStepOptions = {},
  ): Promise<StepResult> {
    const shape = this.#shape(batch);
    if (!(labels instanceof Int32Array) || labels.length !== shape[0]) {
      throw new EngineInputError(`labels must be an Int32Array with one label per image (${shape[0]})`);
    }
    for (const label of labels) {
      if (label < 0 || label >= this.spec.classes) {
        throw new EngineInputError(`label ${label} is outside 0..${this.spec.classes - 1}`);
      }
    }
    checkRange(options.labelSmoothing, 'labelSmoothing', 0, 1);
    let classWeights: Float32Array | undefined;
    if (options.classWeights !== undefined) {
      if (options.classWeights.length !== this.spec.classes || !options.classWeights.every((w) => w >= 0)) {
        throw new EngineInputError(`classWeights needs ${this.spec.classes} non-negative numbers`);
      }
      classWeights = Float32Array.from(options.classWeights);
    }
    const request = {
      flip: options.augment?.flip ?? TRAIN_STEP_DEFAULTS.flip,
      rotate90: options.augment?.rotate90 ?? TRAIN_STEP_DEFAULTS.rotate90,
      bf16: options.bf16 ?? TRAIN_STEP_DEFAULTS.bf16,
      frozenBatchNormEval: options.frozenBatchNormEval ?? TRAIN_STEP_DEFAULTS.frozenBatchNormEval,
      batchNormEval: options.batchNormEval ?? TRAIN_STEP_DEFAULTS.batchNormEval,
      labelSmoothing: options.labelSmoothing ?? TRAIN_STEP_DEFAULTS.labelSmoothing,
      ...(classWeights ? { classWeights } : {}),
    };
    const group = options.group;
    const step = this.#enqueue(() => this.#native.trainStep(batch, shape, labels, request, group?.handle));
    if (!group) return step;
    return step.catch((error: unknown) => {
      throw groupFailure(error, group.rank);
    });
  }

  /**
   * Softmax probabilities in eval mode: one row of `classes` values per image (or bag of
   * `bagSize` instances). With `raw`, the network's output as it is: logits, or features for a
   * network cut before its classifier (whose `classes` is then its feature width).
   */
  async predict(
    batch: Uint8Array | Float32Array,
    options: { bf16?: boolean; raw?: boolean; bagSize?: number } = {},
  ): Promise<Float32Array> {
    const shape = this.#shape(batch, options.bagSize);
    return this.#enqueue(() =>
      this.#native.predict(batch, shape, { ...predictOptions(options), attention: false }),
    );
  }

  /**
   * A bag network's outputs (as `predict`) and its attention pool's score of every instance,
   * before the softmax over its bag: one row of `bagSize` scores per bag.
   */
  async predictWithAttention(
    batch: Float32Array,
    options: { bf16?: boolean; raw?: boolean; bagSize?: number } = {},
  ): Promise<{ values: Float32Array; attention: Float32Array }> {
    if (!this.spec.input.bag) throw new EngineInputError('attention scores come from a bag network');
    const shape = this.#shape(batch, options.bagSize);
    return this.#enqueue(() =>
      this.#native.predict(batch, shape, { ...predictOptions(options), attention: true }),
    );
  }

  /** Every parameter and running statistic, in PyTorch layout ([out, in/groups, kh, kw] for convolutions). */
  async exportTensors(): Promise<ExportedTensor[]> {
    return this.#enqueue(() => this.#native.exportTensors());
  }

  /**
   * Loads named tensors. Strict (the default) demands exactly the network's tensors; otherwise
   * the report lists what was missing or unexpected. Nothing changes if any tensor is invalid.
   */
  async importTensors(
    tensors: readonly NamedTensor[],
    options: { strict?: boolean } = {},
  ): Promise<ImportReport> {
    if (!Array.isArray(tensors)) throw new EngineInputError('importTensors takes an array of named tensors');
    return this.#enqueue(() => this.#native.importTensors(tensors, options.strict ?? true));
  }

  /** Stops training the parameters whose names start with any prefix ('' matches all); returns how many. */
  async freeze(prefixes: readonly string[]): Promise<number> {
    return this.#enqueue(() => this.#native.setTrainable(prefixes, false));
  }

  async unfreeze(prefixes: readonly string[]): Promise<number> {
    return this.#enqueue(() => this.#native.setTrainable(prefixes, true));
  }

  /** Replaces the optimizer (its state starts afresh) over all parameters; frozen ones are skipped. */
  async configureOptimizer(config: OptimizerConfig): Promise<void> {
    checkLearningRate(config.learningRate);
    checkRange(config.weightDecay, 'weightDecay', 0, 1);
    let request: NativeOptimizerConfig;
    if (config.type === 'sgd') {
      checkRange(config.momentum, 'momentum', 0, 1);
      if (config.nesterov && !(config.momentum && config.momentum > 0)) {
        throw new EngineInputError('Nesterov momentum needs a momentum above 0');
      }
      request = { ...OPTIMIZER_DEFAULTS, ...definedOnly(config) };
    } else if (config.type === 'adam' || config.type === 'adamw') {
      checkRange(config.beta1, 'beta1', 0, 0.999999);
      checkRange(config.beta2, 'beta2', 0, 0.999999);
      request = { ...OPTIMIZER_DEFAULTS, ...definedOnly(config) };
    } else {
      throw new EngineInputError(
        `unknown optimizer '${String((config as { type: unknown }).type)}' (sgd, adam or adamw)`,
      );
    }
    return this.#enqueue(() => this.#native.configureOptimizer(request));
  }

  /** Every parameter and buffer from rank `root`: the same start on every rank of a group. */
  async syncFrom(group: ProcessGroup, root = 0): Promise<void> {
    return this.#enqueue(() => this.#native.syncFrom(group.handle, root)).catch((error: unknown) => {
      throw groupFailure(error, group.rank);
    });
  }

  async setLearningRate(learningRate: number): Promise<void> {
    checkLearningRate(learningRate);
    return this.#enqueue(() => this.#native.setLearningRate(learningRate));
  }

  /** The optimizer's state (momentum, Adam moments) as bytes, for checkpoints. */
  async saveOptimizerState(): Promise<Uint8Array> {
    return this.#enqueue(() => this.#native.saveOptimizerState());
  }

  async loadOptimizerState(state: Uint8Array): Promise<void> {
    if (!(state instanceof Uint8Array))
      throw new EngineInputError('the optimizer state must be a Uint8Array');
    return this.#enqueue(() => this.#native.loadOptimizerState(state));
  }
}

/** Threads for libtorch's intra-op parallelism, applied to every later call. */
export function setThreads(threads: number): void {
  if (!Number.isInteger(threads) || threads < 1)
    throw new EngineInputError('threads must be a positive integer');
  loadEngine().setThreads(threads);
}

export function getThreads(): number {
  return loadEngine().getThreads();
}

/** Seeds libtorch's generator: initial weights, dropout and augmentation repeat for a given seed. */
export function manualSeed(seed: number): void {
  if (!Number.isSafeInteger(seed) || seed < 0)
    throw new EngineInputError('the seed must be a non-negative integer');
  loadEngine().manualSeed(seed);
}

export function engineInfo(): ReturnType<ReturnType<typeof loadEngine>['info']> {
  return loadEngine().info();
}
