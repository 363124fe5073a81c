/**
 * What every training method shares, whatever trains the head: the options a caller passes, the
 * result it gets, the recipe as this machine runs it, and what each package says of itself. The
 * fine-tune loop (trainer.ts) and the frozen-base recipes (frozen-base.ts) both build on it.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { ProcessGroup } from '../engine/distributed.js';
import { engineInfo } from '../engine/network.js';
import type { NetworkSpec } from '../engine/spec.js';
import { buildSpec } from '../engine/zoo.js';
import type { PretrainedReport } from '../engine/weights/load.js';
import {
  PACKAGE_FORMAT,
  readManifest,
  softwareVersion,
  type EpochRecord,
  type ModelManifest,
} from '../model/package.js';
import type { PatchStore, StoredImage } from '../prepare/patch-store.js';
import type { TrainConfig } from './config.js';

export interface TrainProgress {
  /** 'features': a frozen-base recipe's feature pass, `batch` of `batches` images done; loss, accuracy and rate are not measured there. */
  pass?: 'features';
  epoch: number;
  epochs: number;
  phase: number;
  batch: number;
  batches: number;
  loss: number;
  accuracy: number;
  learningRate: number;
  patchesPerSecond: number;
  etaSeconds: number;
}

export interface TrainOptions {
  /** true: continue from the checkpoint (an error if it belongs to another config); 'auto': continue when it fits. */
  resume?: boolean | 'auto';
  /** Train on random weights when the pretrained file is missing (said loudly in the package). */
  allowMissingPretrained?: boolean;
  onProgress?: (progress: TrainProgress) => void;
  onEpoch?: (record: EpochRecord) => void;
  onNotice?: (message: string) => void;
  /**
   * Keep a reference of the training images in the package (train/training-reference.ts; default
   * true): `run` leaves it out of its fold models, which are only evaluated, never served.
   */
  reference?: boolean;
  /** Stop after this many epochs of this invocation (tests of resume). */
  stopAfterEpochs?: number;
  /**
   * Data-parallel training: this process is one rank of the group. Every rank starts from rank
   * 0's weights, takes its share of each global batch (batchSize per rank), and averages its
   * gradients with the others; only rank 0 writes checkpoints and the package.
   */
  group?: ProcessGroup;
}

export interface TrainResult {
  packageDir: string;
  manifest: ModelManifest;
  resumedFrom: number;
  stoppedEarly: boolean;
  pretrained: PretrainedReport | null;
  seconds: number;
}

/** A recipe as this machine runs it: its precision decided (engine/precision.ts). */
export type RunConfig = TrainConfig & { bf16: boolean };

/** What a package learnt from: its classes, preprocessing and data (a patch store's, or slides'). */
export type PackageSource = Pick<ModelManifest, 'classes' | 'preprocess' | 'data' | 'slides'>;

/** A patch store as a package's source. */
export function storeSource(config: RunConfig, store: PatchStore): PackageSource {
  return {
    classes: store.manifest.classes,
    preprocess: store.manifest.preprocess,
    data: {
      store: config.store,
      split: store.manifest.split,
      fingerprint: store.manifest.fingerprint,
      images: store.manifest.images,
      patches: store.count,
    },
  };
}

/**
 * The images a package learned from: its training images and those it was validated on (a
 * frozen-base recipe tunes nothing on them, so they train too; the fine-tune loop chose its epoch
 * by them). Without a split, every image of the store.
 */
export function learnedFrom(store: PatchStore): StoredImage[] {
  const hasSplit = store.images.some((i) => i.partition !== null);
  return store.images.filter((i) =>
    hasSplit ? i.partition === 'train' || i.partition === 'validation' : i.partition === null,
  );
}

/** What every package says of itself, whatever the method and the data: the next version. */
export function packageBasics(
  packageDir: string,
  config: RunConfig,
  spec: NetworkSpec,
  source: PackageSource,
): Omit<ModelManifest, 'training' | 'history' | 'metrics'> {
  const previous = existsSync(path.join(packageDir, 'model.json')) ? readManifest(packageDir).version : 0;
  return {
    format: PACKAGE_FORMAT,
    name: config.name,
    version: previous + 1,
    createdAt: new Date().toISOString(),
    software: { pathotype: softwareVersion(), torch: engineInfo().torchVersion },
    spec,
    vote: config.vote,
    ...source,
  };
}

/** The zoo network a recipe builds for patches of `patchSize` px and `classes` classes. */
export function recipeSpec(config: TrainConfig, patchSize: number, classes: number): NetworkSpec {
  return buildSpec(config.architecture, {
    inputSize: patchSize,
    alpha: config.alpha,
    depth: config.depth,
    head: { classes, ...config.head },
  });
}
