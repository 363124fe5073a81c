/**
 * The model package: one directory that `predict`, `evaluate` and `serve` need and nothing
 * else: the network spec, its weights, the class names, the preprocessing (normalisation with
 * its fitted reference, scale, patch size and stride), the training configuration, a
 * fingerprint of the data and split it learned from, its metrics and the software version.
 */
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { Network, type NamedTensor } from '../engine/network.js';
import type { NetworkSpec } from '../engine/spec.js';
import type { EncoderConfig } from '../engine/onnx-encoder.js';
import { BAG_POOLING, type BagPooling, type VoteRule } from '../engine/pooling.js';
import { FEATURES_SUFFIX } from '../engine/zoo.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { portableManifest } from './portable-paths.js';
import { readTensors, writeTensors } from './tensors-file.js';

/**
 * Major.minor: a different major cannot be read by this version. 1.3 states the patches'
 * microns per pixel (preprocess.mpp); older packages have it derived from their targetScale.
 */
export const PACKAGE_FORMAT = '1.3';

export interface EpochRecord {
  epoch: number;
  phase: number;
  learningRate: number;
  loss: number;
  accuracy: number;
  validationImageAccuracy?: number;
  validationPatchAccuracy?: number;
  seconds: number;
  patchesPerSecond: number;
}

/**
 * When the model answers: image scores are divided by `temperature` before the softmax, and a
 * top-class probability below `threshold` makes the result 'uncertain' (above 1: it never
 * answers). Fitted on out-of-fold predictions by cross-validation, for accuracy `target` on
 * the images it answers.
 */
export interface Calibration {
  temperature: number;
  threshold: number;
  target: number;
}

export interface ModelManifest {
  format: string;
  name: string;
  /** Model version: bumped each time a package of this name is written again. */
  version: number;
  createdAt: string;
  software: { pathotype: string; torch?: string };
  spec: NetworkSpec;
  classes: string[];
  preprocess: PreprocessConfig;
  /** Voting rule by default: 'majority' (KNIME) or 'mean' (mean probability). */
  vote: VoteRule;
  training: Record<string, unknown>;
  data: { store: string; split: string | null; fingerprint: string; images: number; patches: number };
  history: EpochRecord[];
  metrics: Record<string, unknown>;
  /** True when no real pretrained weights were available and the base started from random ones. */
  syntheticWeights?: boolean;
  /** Absent: no cross-validation calibrated it, and every result is an answer. */
  calibration?: Calibration;
  /**
   * The frozen base is an ONNX encoder carried in the package (`file`), checked by its SHA-256
   * when loaded; `spec` is then the linear head alone, over the encoder's `dims` features.
   */
  encoder?: PackagedEncoder;
  /**
   * A multiple-instance head over the patch features (engine/mil-head.ts), its weights in the
   * package's `file`; `spec` is then the per-patch feature network (a zoo base without its
   * classifier, or the identity over an ONNX encoder's features).
   */
  mil?: PackagedMilHead;
  /**
   * What the training images looked like (written by train/training-reference.ts since this was
   * added; absent in older packages, whose inputs' atypicality is then unknown): their features
   * for the atypicality of an input, the distributions of their scale, stain and focus, and what
   * the model trained on (image hashes and patients, hashed) so comparisons leave those out.
   */
  reference?: PackagedReference;
  /** A package that learnt from whole slides (`run --data MANIFEST.csv`), not from a patch store: what it learnt from. */
  slides?: LearntFromSlides;
}

/** Quantiles of a training-image measure, at REFERENCE_QUANTILES. */
export type Quantiles = number[];

/** The shares the reference's input distributions are kept at. */
export const REFERENCE_QUANTILES = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99] as const;

export interface PackagedReference {
  /** Its tensors' file: the reference images' unit feature vectors. */
  file: string;
  atypicality: {
    method: 'knn-and-stain';
    /** Its items are training slides (a slide-trained package); absent: training images. */
    unit?: 'slides';
    k: number;
    dims: number;
    images: number;
    patients: number;
    /** Each reference image's feature distance to the other patients' images, ascending. */
    featureScores: number[];
    /** The stain densities' mean and inverse covariance, and each image's distance from the other patients'. */
    stain: { mean: [number, number]; precision: [number, number, number]; scores: number[] };
    /** Each reference image's larger part percentile, ascending. */
    scores: number[];
  };
  /** Distributions of the training images' inputs (null: the measure was not known for them). */
  inputs: { scale: Quantiles | null; focus: Quantiles; haematoxylin: Quantiles; eosin: Quantiles };
  /** The JSON file listing the training images' SHA-1 and the SHA-256 of each patient id. */
  trainingSet: string;
}

/** What a slide-trained package learnt from: its bags, how they were made, how many. */
export interface LearntFromSlides {
  /** 'slide': one bag per slide; 'patient': a patient's slides pooled into one bag. */
  aggregation: 'slide' | 'patient';
  /** Microns per pixel of the tiles (the recipe's). */
  mpp: number;
  slides: number;
  patients: number;
  /** Usable tiles over every training slide. */
  tiles: number;
  /** Tiles sampled per bag while training (at most); bags are whole when answering. */
  maxTilesPerBag: number;
  /** Slides with fewer usable tiles were left out. */
  minUsableTiles: number;
  /** Slides left out for too little usable tissue, with their reason. */
  excluded: { slide: string; reason: string }[];
  /** The manifest the slides came from. */
  manifest: string;
  /** The feature cache key of the base or encoder the bags were extracted with. */
  encoder: string;
}

export interface PackagedMilHead {
  pooling: BagPooling;
  head: NetworkSpec;
  file: string;
}

/** Whether a package's patches have attention scores: its multiple-instance head pools by attention. */
export function hasAttention(manifest: Pick<ModelManifest, 'mil'>): boolean {
  return manifest.mil ? BAG_POOLING[manifest.mil.pooling].attention : false;
}

/** The multiple-instance head's weights inside a package. */
export const MIL_HEAD_FILE = 'mil-head';

export interface PackagedEncoder {
  file: string;
  sha256: string;
  inputSize: number;
  mpp: number;
  mean: [number, number, number];
  std: [number, number, number];
  output: string | null;
  dims: number;
}

/** What a package's network is called in reports: its zoo architecture, or its ONNX encoder. */
export function architectureOf(manifest: ModelManifest): string {
  const base = manifest.encoder
    ? `ONNX encoder ${manifest.encoder.sha256.slice(0, 12)}`
    : manifest.spec.name.replace(new RegExp(`${FEATURES_SUFFIX}$`), '');
  return manifest.mil ? `${base}, ${manifest.mil.pooling} pooling (MIL)` : base;
}

/** The encoder's file name inside a package. */
export const ENCODER_FILE = 'encoder.onnx';

export function packagedEncoder(encoder: {
  config: EncoderConfig;
  sha256: string;
  dims: number;
}): PackagedEncoder {
  const { inputSize, mpp, mean, std, output } = encoder.config;
  return {
    file: ENCODER_FILE,
    sha256: encoder.sha256,
    inputSize,
    mpp,
    mean,
    std,
    output: output ?? null,
    dims: encoder.dims,
  };
}

export class PackageError extends PathotypeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_MODEL_PACKAGE', message, options);
    this.name = 'PackageError';
  }
}

export function softwareVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
    version: string;
  };
  return pkg.version;
}

export function readManifest(dir: string): ModelManifest {
  const file = path.join(dir, 'model.json');
  if (!existsSync(file)) throw new PackageError(`${dir} is not a pathotype model package (no model.json)`);
  let manifest: ModelManifest;
  try {
    manifest = JSON.parse(readFileSync(file, 'utf8')) as ModelManifest;
  } catch (cause) {
    throw new PackageError(`${file} is not valid JSON: ${(cause as Error).message}`, { cause });
  }
  // Read from a file: the field may be missing or of any type.
  const format: unknown = manifest.format;
  const major = typeof format === 'string' ? format.split('.')[0] : undefined;
  if (major !== PACKAGE_FORMAT.split('.')[0]) {
    throw new PackageError(
      `${dir} is a model package of format ${JSON.stringify(format) ?? 'none'}, but this pathotype reads format ${PACKAGE_FORMAT.split('.')[0]}.x: ` +
        'use the pathotype version that made it, or retrain',
    );
  }
  for (const key of ['spec', 'classes', 'preprocess'] as const) {
    if (!manifest[key]) throw new PackageError(`${file} lacks '${key}'`);
  }
  // Up to 1.1 the patch side was called tiles.size.
  const tiles = manifest.preprocess.tiles as { patchSize?: number; size?: number; stride: number };
  if (tiles.patchSize === undefined && typeof tiles.size === 'number')
    manifest.preprocess.tiles = { patchSize: tiles.size, stride: tiles.stride };
  // The network's (or the encoder's) input is derived from the patch size: the two must agree.
  const { patchSize } = manifest.preprocess.tiles;
  const { height, width } = manifest.encoder
    ? { height: manifest.encoder.inputSize, width: manifest.encoder.inputSize }
    : manifest.spec.input;
  if (height !== patchSize || width !== patchSize)
    throw new PackageError(
      `${file} is inconsistent: its patches are ${patchSize}x${patchSize} px but its network takes ${width}x${height}`,
    );
  // Packages made before their paths were written relative carry absolute ones: never passed on.
  return portableManifest(manifest, dir);
}

/** Writes a package atomically: into `<dir>.partial`, then renamed over any older one. */
export async function writePackage(
  dir: string,
  manifest: ModelManifest,
  tensors: readonly NamedTensor[],
  files: readonly { name: string; source: string }[] = [],
  tensorFiles: readonly { name: string; tensors: readonly NamedTensor[] }[] = [],
): Promise<void> {
  const staging = `${dir}.partial`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeTensors(path.join(staging, 'weights'), tensors);
  for (const file of tensorFiles) await writeTensors(path.join(staging, file.name), file.tensors);
  for (const file of files) await copyFile(file.source, path.join(staging, file.name));
  await writeFile(
    path.join(staging, 'model.json'),
    `${JSON.stringify(portableManifest(manifest, dir), null, 2)}\n`,
  );
  const old = `${dir}.old`;
  await rm(old, { recursive: true, force: true });
  if (existsSync(dir)) await rename(dir, old);
  await rename(staging, dir);
  await rm(old, { recursive: true, force: true });
}

/** Updates model.json only (metrics after evaluation), atomically. */
export async function updateManifest(
  dir: string,
  update: (m: ModelManifest) => ModelManifest,
): Promise<ModelManifest> {
  const next = portableManifest(update(readManifest(dir)), dir);
  const file = path.join(dir, 'model.json');
  await writeFile(`${file}.tmp`, `${JSON.stringify(next, null, 2)}\n`);
  await rename(`${file}.tmp`, file);
  return next;
}

export async function loadPackageNetwork(
  dir: string,
): Promise<{ manifest: ModelManifest; network: Network; milHead: Network | null }> {
  const manifest = readManifest(dir);
  const network = await Network.create(manifest.spec);
  await network.importTensors(await readTensors(path.join(dir, 'weights')));
  if (!manifest.mil) return { manifest, network, milHead: null };
  const milHead = await Network.create(manifest.mil.head);
  await milHead.importTensors(await readTensors(path.join(dir, manifest.mil.file)));
  return { manifest, network, milHead };
}
