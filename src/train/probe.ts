/**
 * The frozen-feature recipe ("linear probe"): the pretrained base is not trained at all; each
 * training image's patches go through it once, their globally pooled features are averaged per
 * image, and a regularised multinomial logistic regression learns the classes from those image
 * vectors in seconds. The head becomes the network's `predictions` layer, so the package is an
 * ordinary zoo network: the predictor runs it on patches, and the 'logit' vote (mean patch
 * log-probability) reproduces the head applied to the image's mean features exactly.
 *
 * Features are cached per image under workspace/features/, keyed by the base, its weights and
 * the image's patch bytes: cross-validation folds and the final model share one extraction.
 */
import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { hashPath } from '../io/hash.js';
import { augmentStain, type StainAugmentOptions } from '../image/augment.js';
import type { PatchStore, StoredImage } from '../prepare/patch-store.js';
import { ensureDir, type Workspace } from '../workspace.js';
import type { Network, NamedTensor } from '../engine/network.js';
import {
  openPatchRunner,
  resolveInferenceEngine,
  type InferenceEngine,
  type InferenceEngineSetting,
  type PatchRunner,
} from '../engine/inference-engine.js';
import { softwareVersion } from '../model/package.js';
import { encoderFeatureRunner, type OnnxEncoder } from '../engine/onnx-encoder.js';
import type { NetworkSpec } from '../engine/spec.js';
import { CLASSIFIER_LAYER } from '../engine/zoo.js';
import { seededRandom } from '../random.js';
import { argmax } from '../predict/vote.js';
import { fitLogistic, linearScores, type LinearModel } from './logistic.js';

export interface ProbeConfig {
  /** L2 penalty of the logistic regression on standardised features. */
  l2: number;
  /** Feature rows per training image: the patches as they are, plus stain-jittered copies. */
  views: number;
  /** Which engine runs the frozen base (engine/inference-engine.ts); auto: the faster one at this precision. */
  engine: InferenceEngineSetting;
}

export interface ProbeResult {
  /** The `predictions` layer's weight and bias. */
  head: NamedTensor[];
  images: number;
  rows: number;
  dims: number;
  /** Training-image accuracy of the fitted head (in-sample: a check, not an estimate). */
  trainingAccuracy: number;
  extractedImages: number;
  cachedImages: number;
  seconds: number;
  /** The engine that ran the frozen base. */
  engine: InferenceEngine;
}

/**
 * The feature vectors of an image's patches (count x dims), from the cache (keyed by the
 * patches' bytes) or the feature pass: the probe averages them, a multiple-instance head pools them.
 */
export async function patchFeatures(
  pass: PatchRunner,
  bf16: boolean,
  dims: number,
  patches: Uint8Array,
  count: number,
  cacheDir: string,
): Promise<{ features: Float32Array; fromCache: boolean }> {
  const file = path.join(cacheDir, `${createHash('sha1').update(patches).digest('hex')}.patches.f32`);
  if (existsSync(file)) {
    const bytes = await readFile(file);
    if (bytes.byteLength === count * dims * 4)
      return {
        features: new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4),
        fromCache: true,
      };
  }
  const features = await runFeatures(pass, bf16, dims, patches, count);
  await writeFile(`${file}.tmp`, features);
  await rename(`${file}.tmp`, file);
  return { features, fromCache: false };
}

/** The frozen base's features of `count` patches (uint8 HWC back to back), in batches of 64. */
export async function runFeatures(
  pass: PatchRunner,
  bf16: boolean,
  dims: number,
  patches: Uint8Array,
  count: number,
): Promise<Float32Array> {
  const features = new Float32Array(count * dims);
  const imageBytes = pass.imageBytes;
  for (let i = 0; i < count; i += 64) {
    const n = Math.min(64, count - i);
    const batch = await pass.predict(patches.subarray(i * imageBytes, (i + n) * imageBytes), {
      bf16,
      raw: true,
    });
    features.set(batch, i * dims);
  }
  return features;
}

/** The mean of `count` feature rows of `dims` values. */
export function meanOf(features: Float32Array, count: number, dims: number): Float32Array {
  const mean = new Float32Array(dims);
  for (let p = 0; p < count; p++)
    for (let d = 0; d < dims; d++) mean[d] = (mean[d] ?? 0) + (features[p * dims + d] ?? 0) / count;
  return mean;
}

/** Weight files already hashed by this process, by path, size and date: each fold of a run opens the same base. */
const weightDigests = new Map<string, string>();

/** The weights' content digest (a file's taken once per process while it stays the same size and date). */
async function weightsDigest(pretrained: string): Promise<string> {
  const stat = statSync(pretrained);
  if (stat.isDirectory()) return hashPath(pretrained);
  const key = JSON.stringify([path.resolve(pretrained), stat.size, stat.mtimeMs]);
  const known = weightDigests.get(key);
  if (known) return known;
  const digest = await hashPath(pretrained);
  weightDigests.set(key, digest);
  return digest;
}

/**
 * The feature cache's key: the base, its precision and engine, and its weights by content, not by
 * path or date, so that machines sharing a cache (the extraction workers) agree on it wherever
 * each keeps its copy of the weights.
 */
async function cacheKey(
  spec: NetworkSpec,
  pretrained: string | null,
  bf16: boolean,
  engine: InferenceEngine,
): Promise<string> {
  const weights = pretrained && existsSync(pretrained) ? await weightsDigest(pretrained) : null;
  return createHash('sha1')
    .update(
      JSON.stringify({
        input: spec.input,
        layers: spec.layers,
        weights,
        bf16,
        // The engines agree to 1e-4, not to the bit: each keeps its own features.
        ...(engine === 'addon' ? {} : { engine }),
      }),
    )
    .digest('hex')
    .slice(0, 16);
}

/** Where a probe's features come from: a runner over the frozen base, its width, and its cache folder's key. */
export interface ProbeFeatures {
  runner: PatchRunner;
  dims: number;
  cacheKey: string;
  /** The base runs in bfloat16 (the addon only; part of the cache key). */
  bf16?: boolean;
}

/** A zoo base (pretrained weights loaded) run by the engine the setting resolves to. */
export async function zooFeatures(
  network: Network,
  options: { pretrained: string | null; bf16: boolean; engine: InferenceEngineSetting },
): Promise<ProbeFeatures> {
  const engine = resolveInferenceEngine(options.engine, options.bf16);
  return {
    runner: await openPatchRunner(network, engine, softwareVersion()),
    dims: network.spec.outputShape[0] ?? 0,
    cacheKey: await cacheKey(network.spec, options.pretrained, options.bf16, engine),
    bf16: options.bf16,
  };
}

/** A user's ONNX encoder (closed with its runner): features keyed by the file's SHA-256 and the way patches are fed to it. */
export function encoderFeatures(encoder: OnnxEncoder): ProbeFeatures {
  const { inputSize, mean, std } = encoder.config;
  const key = createHash('sha1')
    .update(JSON.stringify({ onnx: encoder.sha256, inputSize, mean, std, output: encoder.output }))
    .digest('hex')
    .slice(0, 16);
  return {
    runner: encoderFeatureRunner(encoder),
    dims: encoder.dims,
    cacheKey: `onnx-${key}`,
  };
}

export interface ProbeOptions {
  probe: ProbeConfig;
  stain: StainAugmentOptions;
  bf16: boolean;
  seed: number;
  onProgress?: (done: number, total: number) => void;
}

export async function fitProbe(
  workspace: Workspace,
  store: PatchStore,
  features: ProbeFeatures,
  images: readonly StoredImage[],
  options: ProbeOptions,
): Promise<ProbeResult> {
  const started = performance.now();
  if (images.length === 0) throw new PathotypeError('ERR_TRAIN', 'the probe has no training images');
  const cacheDir = ensureDir(path.join(workspace.featuresDir, features.cacheKey));
  return probeFeatures(features.runner, store, images, {
    ...options,
    dims: features.dims,
    cacheDir,
    started,
  });
}

/** One training image's patch features (one view of it): a bag of `count` instances of `dims` values. */
export interface FeatureBag {
  image: StoredImage;
  label: number;
  features: Float32Array;
  count: number;
}

/**
 * Every training image's patch features, as they are and in `views - 1` stain-jittered copies
 * (seeded per image and view, so cached), from the cache or the frozen base.
 */
export async function collectFeatureBags(
  pass: PatchRunner,
  store: PatchStore,
  images: readonly StoredImage[],
  options: ProbeOptions & { views: number; dims: number; cacheDir: string },
): Promise<{ bags: FeatureBag[]; extracted: number; cached: number }> {
  const classes = store.manifest.classes;
  const pixels = store.patchSize ** 2;
  const bags: FeatureBag[] = [];
  let extracted = 0;
  let cached = 0;
  for (const [n, image] of images.entries()) {
    const ids = store.patchesOf(image.imageId);
    if (ids.length === 0) continue;
    const { patches } = await store.read(ids);
    for (let view = 0; view < Math.max(1, options.views); view++) {
      const input = view === 0 ? patches : patches.slice();
      if (view > 0)
        augmentStain(
          input,
          ids.length,
          pixels,
          options.stain,
          seededRandom(options.seed * 7919 + image.imageId * 31 + view),
        );
      const { features, fromCache } = await patchFeatures(
        pass,
        options.bf16,
        options.dims,
        input,
        ids.length,
        options.cacheDir,
      );
      if (fromCache) cached++;
      else extracted++;
      bags.push({ image, label: classes.indexOf(image.className), features, count: ids.length });
    }
    options.onProgress?.(n + 1, images.length);
  }
  return { bags, extracted, cached };
}

async function probeFeatures(
  pass: PatchRunner,
  store: PatchStore,
  images: readonly StoredImage[],
  options: ProbeOptions & { dims: number; cacheDir: string; started: number },
): Promise<ProbeResult> {
  const { dims, started } = options;
  const classes = store.manifest.classes;
  const { bags, extracted, cached } = await collectFeatureBags(pass, store, images, {
    ...options,
    views: options.probe.views,
  });
  const x = new Float64Array(bags.length * dims);
  bags.forEach((b, i) => x.set(meanOf(b.features, b.count, dims), i * dims));
  const fitted = fitLinearHead(
    x,
    Int32Array.from(bags, (b) => b.label),
    classes.length,
    options.probe.l2,
  );
  return {
    head: fitted.head,
    images: images.length,
    rows: bags.length,
    dims,
    trainingAccuracy: fitted.trainingAccuracy,
    extractedImages: extracted,
    cachedImages: cached,
    seconds: (performance.now() - started) / 1000,
    engine: pass.engine,
  };
}

/** Each row's weight so that every class weighs the same, whatever its number of rows. */
export function classBalancedWeights(labels: Int32Array, classes: number): Float64Array {
  const counts = new Array<number>(classes).fill(0);
  for (const label of labels) counts[label] = (counts[label] ?? 0) + 1;
  return Float64Array.from(labels, (label) => 1 / Math.max(1, counts[label] ?? 0));
}

/**
 * The probe's head on feature rows (rows x dims, one label each), class-balanced: the logistic
 * regression as the package's `predictions` layer, and its in-sample accuracy (a check).
 */
export function fitLinearHead(
  x: Float64Array,
  labels: Int32Array,
  classes: number,
  l2: number,
): { model: LinearModel; head: NamedTensor[]; trainingAccuracy: number } {
  const dims = x.length / Math.max(1, labels.length);
  const model = fitLogistic(x, labels, classes, { l2, sampleWeights: classBalancedWeights(labels, classes) });
  const scores = linearScores(model, x);
  let right = 0;
  for (let r = 0; r < labels.length; r++) right += argmax(scores, r * classes, classes) === labels[r] ? 1 : 0;
  return {
    model,
    head: [
      { name: `${CLASSIFIER_LAYER}.weight`, shape: [classes, dims], data: Float32Array.from(model.weight) },
      { name: `${CLASSIFIER_LAYER}.bias`, shape: [classes], data: Float32Array.from(model.bias) },
    ],
    trainingAccuracy: right / Math.max(1, labels.length),
  };
}
