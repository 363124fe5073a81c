/**
 * The multiple-instance recipe (`method: mil`): the pretrained base stays frozen, as for the
 * probe, and each training image becomes a bag of its patches' cached features with the image's
 * one label. A small head (engine/mil-head.ts: projection, gated-attention or mean pooling, linear
 * classifier) learns from the bags in the engine by AdamW, one bag a step as Ilse et al. and CLAM
 * train, in seconds. Every epoch draws as many bags as there are, each class equally often, so
 * that no class outweighs another whatever its number of images (a class weight would cancel in
 * a batch of one).
 */
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { Network, type NamedTensor } from '../engine/network.js';
import { milHeadSpec } from '../engine/mil-head.js';
import type { BagPooling } from '../engine/pooling.js';
import type { InferenceEngine } from '../engine/inference-engine.js';
import type { NetworkSpec } from '../engine/spec.js';
import type { PatchStore, StoredImage } from '../prepare/patch-store.js';
import { argmax } from '../predict/vote.js';
import { seededRandom } from '../random.js';
import { ensureDir, type Workspace } from '../workspace.js';
import { collectFeatureBags, type ProbeFeatures, type ProbeOptions } from './probe.js';

export interface MilConfig {
  pooling: BagPooling;
  /** Width of each patch's features after the head's projection. */
  projection: number;
  /** Hidden size of the gated attention. */
  attention: number;
  dropout: number;
  epochs: number;
  learningRate: number;
  weightDecay: number;
  /** Bags per training image: its patches as they are, plus stain-jittered copies. */
  views: number;
}

export interface MilResult {
  /** The head's network (its input standardisation fitted on the training patches) and weights. */
  spec: NetworkSpec;
  tensors: NamedTensor[];
  images: number;
  bags: number;
  dims: number;
  /** Training-bag accuracy of the fitted head (in-sample: a check, not an estimate). */
  trainingAccuracy: number;
  /** Mean loss of the last epoch. */
  finalLoss: number;
  extractedImages: number;
  cachedImages: number;
  seconds: number;
  engine: InferenceEngine;
}

/** A bag the head learns from: `count` instances of the features' width, and its label. */
export interface LabelledBag {
  label: number;
  features: Float32Array;
  count: number;
}

/** Per-feature mean and standard deviation over every instance of every bag. */
function instanceStandardiser(bags: readonly LabelledBag[], dims: number): { mean: number[]; std: number[] } {
  const sum = new Float64Array(dims);
  const squares = new Float64Array(dims);
  let n = 0;
  for (const bag of bags) {
    for (let i = 0; i < bag.count; i++)
      for (let d = 0; d < dims; d++) {
        const v = bag.features[i * dims + d] ?? 0;
        sum[d] = (sum[d] ?? 0) + v;
        squares[d] = (squares[d] ?? 0) + v * v;
      }
    n += bag.count;
  }
  const mean = Array.from(sum, (s) => s / n);
  const std = Array.from(squares, (q, d) => Math.sqrt(Math.max(q / n - (mean[d] ?? 0) ** 2, 0)) + 1e-6);
  return { mean, std };
}

/** An epoch's bags: as many as there are, each class (of `present`, its bags) drawn equally often, then a bag of it at random. */
function balancedDraw<T>(bags: readonly T[], present: readonly T[][], random: () => number): T[] {
  return bags.map(() => {
    const members = present[Math.floor(random() * present.length)] ?? [];
    return members[Math.floor(random() * members.length)] as T;
  });
}

/** At most `cap` of a bag's instances, drawn at random without replacement (the bag itself when it has no more). */
export function sampleInstances(
  bag: Pick<LabelledBag, 'features' | 'count'>,
  dims: number,
  cap: number,
  random: () => number,
): Float32Array {
  if (bag.count <= cap) return bag.features.subarray(0, bag.count * dims);
  const order = Array.from({ length: bag.count }, (_, i) => i);
  const out = new Float32Array(cap * dims);
  for (let k = 0; k < cap; k++) {
    const j = k + Math.floor(random() * (bag.count - k));
    const chosen = order[j] ?? 0;
    order[j] = order[k] ?? 0;
    out.set(bag.features.subarray(chosen * dims, (chosen + 1) * dims), k * dims);
  }
  return out;
}

/**
 * The multiple-instance head trained on labelled bags, one bag a step, each class drawn equally
 * often; with `maxInstances`, each step sees at most that many of its bag's instances, drawn
 * afresh every epoch (Slideflow's bag size), while the training accuracy is on whole bags.
 */
export async function trainMilHead(
  bags: readonly LabelledBag[],
  dims: number,
  classes: number,
  options: { mil: MilConfig; seed: number; maxInstances?: number },
): Promise<{
  spec: NetworkSpec;
  network: Network;
  tensors: NamedTensor[];
  trainingAccuracy: number;
  finalLoss: number;
}> {
  const { mil } = options;
  const spec = milHeadSpec({ features: dims, classes, ...mil, ...instanceStandardiser(bags, dims) });
  const head = await Network.create(spec);
  await head.configureOptimizer({
    type: 'adamw',
    learningRate: mil.learningRate,
    weightDecay: mil.weightDecay,
  });
  const random = seededRandom(options.seed * 104729 + 17);
  const present = Array.from({ length: classes }, (_, c) => bags.filter((b) => b.label === c)).filter(
    (members) => members.length > 0,
  );
  const cap = options.maxInstances ?? Infinity;
  let finalLoss = 0;
  for (let epoch = 0; epoch < mil.epochs; epoch++) {
    let loss = 0;
    const drawn = balancedDraw(bags, present, random);
    for (const bag of drawn) {
      const instances = bag.count > cap ? sampleInstances(bag, dims, cap, random) : bag.features;
      loss += (await head.trainStep(instances, Int32Array.of(bag.label))).loss;
    }
    finalLoss = loss / drawn.length;
  }
  let right = 0;
  for (const bag of bags) right += argmax(await head.predict(bag.features)) === bag.label ? 1 : 0;
  return {
    spec,
    network: head,
    tensors: (await head.exportTensors()).map(({ name, shape, data }) => ({ name, shape, data })),
    trainingAccuracy: right / Math.max(1, bags.length),
    finalLoss,
  };
}

export async function fitMil(
  workspace: Workspace,
  store: PatchStore,
  features: ProbeFeatures,
  images: readonly StoredImage[],
  options: ProbeOptions & { mil: MilConfig },
): Promise<MilResult> {
  const started = performance.now();
  if (images.length === 0) throw new PathotypeError('ERR_TRAIN', 'the MIL head has no training images');
  const { dims } = features;
  const cacheDir = ensureDir(path.join(workspace.featuresDir, features.cacheKey));
  const { bags, extracted, cached } = await collectFeatureBags(features.runner, store, images, {
    ...options,
    views: options.mil.views,
    dims,
    cacheDir,
  });
  if (bags.length === 0) throw new PathotypeError('ERR_TRAIN', 'no training image has any patch');
  const head = await trainMilHead(bags, dims, store.manifest.classes.length, options);
  return {
    spec: head.spec,
    tensors: head.tensors,
    images: images.length,
    bags: bags.length,
    dims,
    trainingAccuracy: head.trainingAccuracy,
    finalLoss: head.finalLoss,
    extractedImages: extracted,
    cachedImages: cached,
    seconds: (performance.now() - started) / 1000,
    engine: features.runner.engine,
  };
}
