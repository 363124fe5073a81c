/**
 * How unlike the training images an input is, in the model's own features: the distance from the
 * image's mean patch feature vector (standardised by the training images' statistics) to its
 * k-th nearest training image (Sun et al. 2022, deep nearest neighbours), given as a percentile
 * of the training images' own scores. Those reference scores are each training image's distance
 * to the images of the other patients only, since a new input comes from a patient the model has
 * not seen: so held-out patients score like the reference, and about 1% of them lie beyond its
 * 99th percentile. A package without a reference (made before it was written) scores nothing:
 * the atypicality is unknown.
 */
import path from 'node:path';

import { PackageError, type ModelManifest } from '../model/package.js';
import { readTensors } from '../model/tensors-file.js';

/** Beyond this percentile of the training images' scores an input is "unlike the training data". */
export const UNLIKE_PERCENTILE = 99;

/** Neighbours the distance is taken to (the k-th nearest). */
export const NEIGHBOURS = 5;

// A type, not an interface: the API's response schema types take it as an open record.
export type Atypicality = {
  /** Distance to the k-th nearest training image, in standardised feature units. */
  score: number;
  /** Share of the training images' own (held-out patient) scores below it, in percent. */
  percentile: number;
  /** Beyond the UNLIKE_PERCENTILE: the page and the API say "unlike the training data". */
  unlike: boolean;
};

/** A package's reference: the standardisation, every reference image's vector, their own scores. */
export interface AtypicalityReference {
  k: number;
  dims: number;
  mean: Float32Array;
  scale: Float32Array;
  /** Reference images' standardised vectors, `dims` each. */
  vectors: Float32Array;
  /** Their own scores, ascending. */
  scores: readonly number[];
}

/** The tensors of a reference inside a package. */
export const REFERENCE_TENSORS = { mean: 'mean', scale: 'scale', vectors: 'vectors' } as const;

function standardised(features: ArrayLike<number>, mean: Float32Array, scale: Float32Array): Float32Array {
  const out = new Float32Array(mean.length);
  for (let d = 0; d < mean.length; d++) out[d] = ((features[d] ?? 0) - (mean[d] ?? 0)) * (scale[d] ?? 0);
  return out;
}

/** The k-th smallest distance from `v` to the rows of `vectors` that `keep` admits. */
function kthDistance(
  vectors: Float32Array,
  dims: number,
  v: Float32Array,
  k: number,
  keep: (row: number) => boolean = () => true,
): number {
  const distances: number[] = [];
  for (let row = 0; row < vectors.length / dims; row++) {
    if (!keep(row)) continue;
    let sum = 0;
    for (let d = 0; d < dims; d++) {
      const diff = (vectors[row * dims + d] ?? 0) - (v[d] ?? 0);
      sum += diff * diff;
    }
    distances.push(Math.sqrt(sum / dims));
  }
  if (distances.length === 0) return 0;
  distances.sort((a, b) => a - b);
  return distances[Math.min(k, distances.length) - 1] ?? 0;
}

/** Percent of `sorted` below `value`, ties counted half. */
export function percentileOf(sorted: readonly number[], value: number): number {
  if (sorted.length === 0) return 0;
  let below = 0;
  let equal = 0;
  for (const s of sorted) {
    if (s < value) below++;
    else if (s === value) equal++;
  }
  return (100 * (below + equal / 2)) / sorted.length;
}

export function atypicalityOf(reference: AtypicalityReference, features: ArrayLike<number>): Atypicality {
  const v = standardised(features, reference.mean, reference.scale);
  const score = kthDistance(reference.vectors, reference.dims, v, reference.k);
  const percentile = percentileOf(reference.scores, score);
  return {
    score: Number(score.toPrecision(4)),
    percentile: Number(percentile.toFixed(1)),
    unlike: percentile > UNLIKE_PERCENTILE,
  };
}

/**
 * The reference of a set of training images: their mean feature vectors (`dims` each) and the
 * patient of each. Each dimension is standardised by the images' spread (a floor of a tenth of
 * the typical spread keeps near-constant features from dominating); each image's own score is
 * its distance to the images of other patients.
 */
export function buildReference(
  vectors: readonly Float32Array[],
  groups: readonly string[],
  k = NEIGHBOURS,
): AtypicalityReference {
  const n = vectors.length;
  const dims = vectors[0]?.length ?? 0;
  const mean = new Float32Array(dims);
  const spread = new Float64Array(dims);
  for (const v of vectors) for (let d = 0; d < dims; d++) mean[d] = (mean[d] ?? 0) + (v[d] ?? 0) / n;
  for (const v of vectors)
    for (let d = 0; d < dims; d++) spread[d] = (spread[d] ?? 0) + ((v[d] ?? 0) - (mean[d] ?? 0)) ** 2 / n;
  const sd = Array.from(spread, Math.sqrt);
  const typical = sd.reduce((a, b) => a + b, 0) / Math.max(1, dims);
  const scale = Float32Array.from(sd, (s) => 1 / Math.max(s, typical / 10, 1e-12));
  const all = new Float32Array(n * dims);
  vectors.forEach((v, i) => all.set(standardised(v, mean, scale), i * dims));
  const scores = vectors
    .map((_, i) =>
      kthDistance(all, dims, all.subarray(i * dims, (i + 1) * dims), k, (row) => groups[row] !== groups[i]),
    )
    .sort((a, b) => a - b);
  return { k, dims, mean, scale, vectors: all, scores };
}

/** The reference a package carries, or null when it has none (packages made before it). */
export async function readReference(
  dir: string,
  manifest: ModelManifest,
): Promise<AtypicalityReference | null> {
  const packaged = manifest.reference;
  if (!packaged) return null;
  const tensors = await readTensors(path.join(dir, packaged.file));
  const find = (name: string): Float32Array => {
    const tensor = tensors.find((t) => t.name === name);
    if (!tensor) throw new PackageError(`${dir}: its reference lacks '${name}'`);
    return tensor.data;
  };
  return {
    k: packaged.atypicality.k,
    dims: packaged.atypicality.dims,
    mean: find(REFERENCE_TENSORS.mean),
    scale: find(REFERENCE_TENSORS.scale),
    vectors: find(REFERENCE_TENSORS.vectors),
    scores: packaged.atypicality.scores,
  };
}
