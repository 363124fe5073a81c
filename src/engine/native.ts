/**
 * Loads the libtorch addon and describes its raw surface. Only src/engine talks to this module;
 * everything else goes through Network, which validates arguments first.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

import { applyWaitPolicy, availableCores } from '../cpu.js';
import { EngineError } from '../errors.js';

export interface NativeTensor {
  name: string;
  shape: number[];
  data: Float32Array;
  buffer: boolean;
  trainable: boolean;
}

export interface NativeImportReport {
  loaded: string[];
  missing: string[];
  unexpected: string[];
}

export interface NativeStepResult {
  loss: number;
  correct: number;
  count: number;
  syncMs: number;
}

export interface NativeTrainOptions {
  flip: boolean;
  rotate90: boolean;
  bf16: boolean;
  frozenBatchNormEval: boolean;
  batchNormEval: boolean;
  labelSmoothing: number;
  classWeights?: Float32Array;
}

/** Every field filled: the addon reads options without defaults of its own. */
export interface NativeOptimizerConfig {
  type: 'sgd' | 'adam' | 'adamw';
  learningRate: number;
  momentum: number;
  nesterov: boolean;
  weightDecay: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

/** An opaque c10d process group handle. */
export type NativeGroup = { readonly __brand: 'NativeGroup' };

export interface NativeNetwork {
  trainStep(
    batch: Uint8Array | Float32Array,
    shape: readonly number[],
    labels: Int32Array,
    options: NativeTrainOptions,
    group?: NativeGroup,
  ): Promise<NativeStepResult>;
  predict(
    batch: Uint8Array | Float32Array,
    shape: readonly number[],
    options: { bf16: boolean; raw: boolean; attention: false },
  ): Promise<Float32Array>;
  predict(
    batch: Uint8Array | Float32Array,
    shape: readonly number[],
    options: { bf16: boolean; raw: boolean; attention: true },
  ): Promise<{ values: Float32Array; attention: Float32Array }>;
  exportTensors(): Promise<NativeTensor[]>;
  importTensors(
    tensors: readonly { name: string; shape: readonly number[]; data: Float32Array }[],
    strict: boolean,
  ): Promise<NativeImportReport>;
  setTrainable(prefixes: readonly string[], trainable: boolean): Promise<number>;
  configureOptimizer(config: NativeOptimizerConfig): Promise<void>;
  setLearningRate(learningRate: number): Promise<void>;
  saveOptimizerState(): Promise<Uint8Array>;
  loadOptimizerState(state: Uint8Array): Promise<void>;
  syncFrom(group: NativeGroup, root: number): Promise<void>;
}

export interface NativeEngineInfo {
  torchVersion: string;
  mkldnn: boolean;
  openmp: boolean;
  parallelInfo: string;
  /** "keep": freed memory kept for reuse (the addon's default); "system": glibc's defaults (PATHOTYPE_MALLOC=system). */
  memoryPolicy: 'keep' | 'system';
}

export interface NativeEngine {
  createNetwork(spec: object): Promise<NativeNetwork>;
  createGroup(options: {
    rank: number;
    worldSize: number;
    host: string;
    port: number;
    timeoutMs: number;
  }): Promise<NativeGroup>;
  setThreads(threads: number): void;
  getThreads(): number;
  manualSeed(seed: number): void;
  info(): NativeEngineInfo;
}

const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const addonPath = path.join(packageRoot, 'native/build/Release/pathotype_engine.node');

let engine: NativeEngine | undefined;

export function loadEngine(): NativeEngine {
  if (engine) return engine;
  if (!existsSync(addonPath)) {
    throw new EngineError(
      'ERR_ENGINE_MISSING',
      `the libtorch engine is not built (${addonPath} is missing): run 'npm run build:native' ` +
        `(needs Debian's libtorch-dev, or LIBTORCH=/path/to/libtorch)`,
    );
  }
  waitPolicy = applyWaitPolicy();
  const require = createRequire(import.meta.url);
  try {
    engine = require(addonPath) as NativeEngine;
  } catch (cause) {
    throw new EngineError(
      'ERR_ENGINE_LOAD',
      `the libtorch engine at ${addonPath} failed to load: ${String(cause)}. ` +
        `Rebuild it with 'npm run build:native' after installing libtorch-dev`,
      { cause },
    );
  }
  // libtorch's own default can be a single thread, or every core of a host whose quota allows
  // two: use the cores this process may actually use, unless told otherwise.
  const threads = Number(process.env.PATHOTYPE_THREADS ?? availableCores());
  engine.setThreads(Number.isInteger(threads) && threads > 0 ? threads : availableCores());
  return engine;
}

let waitPolicy: string | undefined;

/** The OpenMP wait policy the engine started with (see cpu.ts). */
export function engineWaitPolicy(): string | undefined {
  return waitPolicy;
}
