/**
 * How unlike the training images an input is, in two respects the model's answer depends on:
 * its features (the image's mean patch feature vector, L2-normalised, and its distance to the
 * k-th nearest training image: Sun et al. 2022, deep nearest neighbours) and its staining (the
 * Mahalanobis distance of its haematoxylin and eosin densities from the training images'). Each
 * is a percentile of the training images' own scores, and the input's atypicality is the larger
 * of the two, again as a percentile of the training images' own larger ones. The reference
 * scores are each training image's distances to the images of the other patients only, since a
 * new input comes from a patient the model has not seen: so held-out patients score like the
 * reference, and few lie beyond its 99th percentile. A package without a reference (made before
 * it was written) scores nothing: the atypicality is unknown.
 */
import path from 'node:path';

import { PackageError, type ModelManifest } from '../model/package.js';
import { readTensors } from '../model/tensors-file.js';

/** Beyond this percentile of the training images' scores an input is "unlike the training data". */
export const UNLIKE_PERCENTILE = 99;

/**
 * Neighbours the feature distance is taken to (the k-th nearest). Chosen on the development
 * images (15 training patients, 9 held out; README "Drift"): 10 kept held-out fields near the
 * nominal 1% where 1 to 5 flagged 4-6% of them.
 */
export const NEIGHBOURS = 10;

// A type, not an interface: the API's response schema types take it as an open record.
export type Atypicality = {
  /** Share of the training images' own (held-out patient) scores below the input's, in percent. */
  percentile: number;
  /** Beyond the UNLIKE_PERCENTILE: the page and the API say "unlike the training data". */
  unlike: boolean;
  /** The two parts' own percentiles: the model's features, the stain densities. */
  features: number;
  stain: number;
  /** What the percentiles are of: the training images' scores or the training slides' (absent in older records: images). */
  unit?: ReferenceUnit;
};

/** The stain part: the training images' mean densities (haematoxylin, eosin) and their inverse covariance. */
export interface StainReference {
  mean: [number, number];
  /** [a, b, c] of the symmetric inverse covariance [[a, b], [b, c]]. */
  precision: [number, number, number];
  /** Each training image's distance from the other patients' images, ascending. */
  scores: number[];
}

/**
 * What a reference's items are: a training image (its mean patch features) or a training slide
 * (the mean of its tissue tiles' features, over hundreds of tiles): an input is scored only
 * against items of its own kind, since a mean over a slide lies nearer the centre than one over
 * a field, and a field would look unlike every slide.
 */
export type ReferenceUnit = 'images' | 'slides';

/** A package's reference: every training image's (or slide's) unit feature vector and the parts' own scores. */
export interface AtypicalityReference {
  unit: ReferenceUnit;
  k: number;
  dims: number;
  /** Reference images' L2-normalised feature vectors, `dims` each. */
  vectors: Float32Array;
  /** Their own feature scores, ascending. */
  featureScores: readonly number[];
  stain: StainReference;
  /** Their own combined scores (the larger part percentile), ascending. */
  scores: readonly number[];
}

/** The tensor of a reference inside a package. */
export const REFERENCE_VECTORS = 'vectors';

function unitVector(features: ArrayLike<number>): Float32Array {
  let norm = 0;
  for (let d = 0; d < features.length; d++) norm += (features[d] ?? 0) ** 2;
  const scale = norm > 0 ? 1 / Math.sqrt(norm) : 0;
  return Float32Array.from(features, (v) => v * scale);
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
    distances.push(Math.sqrt(sum));
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

type Densities = readonly [number, number];

function stainFit(points: readonly Densities[]): Omit<StainReference, 'scores'> {
  const n = Math.max(1, points.length);
  const mean: [number, number] = [0, 1].map((i) => points.reduce((s, p) => s + p[i as 0 | 1], 0) / n) as [
    number,
    number,
  ];
  let [xx, xy, yy] = [0, 0, 0];
  for (const [h, e] of points) {
    xx += (h - mean[0]) ** 2 / n;
    xy += ((h - mean[0]) * (e - mean[1])) / n;
    yy += (e - mean[1]) ** 2 / n;
  }
  // A ridge of a thousandth of the spread keeps a degenerate set (one stain constant) invertible.
  const ridge = (xx + yy) / 1000 + 1e-12;
  xx += ridge;
  yy += ridge;
  const det = xx * yy - xy * xy;
  return { mean, precision: [yy / det, -xy / det, xx / det] };
}

function stainDistance(fit: Omit<StainReference, 'scores'>, [h, e]: Densities): number {
  const [a, b, c] = fit.precision;
  const dh = h - fit.mean[0];
  const de = e - fit.mean[1];
  return Math.sqrt(Math.max(0, a * dh * dh + 2 * b * dh * de + c * de * de));
}

function rounded(percentile: number): number {
  return Number(percentile.toFixed(1));
}

export function atypicalityOf(
  reference: AtypicalityReference,
  features: ArrayLike<number>,
  stain: Densities,
): Atypicality {
  const featurePart = percentileOf(
    reference.featureScores,
    kthDistance(reference.vectors, reference.dims, unitVector(features), reference.k),
  );
  const stainPart = percentileOf(reference.stain.scores, stainDistance(reference.stain, stain));
  const percentile = percentileOf(reference.scores, Math.max(featurePart, stainPart));
  return {
    percentile: rounded(percentile),
    unlike: percentile > UNLIKE_PERCENTILE,
    features: rounded(featurePart),
    stain: rounded(stainPart),
    unit: reference.unit,
  };
}

/** The training images of a reference: mean features, stain densities and patient of each. */
export interface ReferenceImage {
  features: Float32Array;
  stain: Densities;
  group: string;
}

/** Each image's stain distance from a fit on the other patients' images (one fit per patient). */
function heldOutStainScores(images: readonly ReferenceImage[]): number[] {
  const fits = new Map<string, Omit<StainReference, 'scores'>>();
  return images.map((image) => {
    let fit = fits.get(image.group);
    if (!fit) {
      fit = stainFit(images.filter((i) => i.group !== image.group).map((i) => i.stain));
      fits.set(image.group, fit);
    }
    return stainDistance(fit, image.stain);
  });
}

/** The reference of a set of training images; each image's own scores are against the other patients' images. */
export function buildReference(
  images: readonly ReferenceImage[],
  unit: ReferenceUnit = 'images',
  k = NEIGHBOURS,
): AtypicalityReference {
  const dims = images[0]?.features.length ?? 0;
  const vectors = new Float32Array(images.length * dims);
  images.forEach((image, i) => vectors.set(unitVector(image.features), i * dims));
  const featureOwn = images.map((image, i) =>
    kthDistance(
      vectors,
      dims,
      vectors.subarray(i * dims, (i + 1) * dims),
      k,
      (row) => images[row]?.group !== image.group,
    ),
  );
  const stainOwn = heldOutStainScores(images);
  const ascending = (values: number[]): number[] => [...values].sort((a, b) => a - b);
  const featureScores = ascending(featureOwn);
  const stainScores = ascending(stainOwn);
  const combined = images.map((_, i) =>
    Math.max(percentileOf(featureScores, featureOwn[i] ?? 0), percentileOf(stainScores, stainOwn[i] ?? 0)),
  );
  return {
    unit,
    k,
    dims,
    vectors,
    featureScores,
    stain: { ...stainFit(images.map((i) => i.stain)), scores: stainScores },
    scores: ascending(combined),
  };
}

/** The reference a package carries, or null when it has none (packages made before it). */
export async function readReference(
  dir: string,
  manifest: ModelManifest,
): Promise<AtypicalityReference | null> {
  const packaged = manifest.reference;
  if (!packaged) return null;
  const tensors = await readTensors(path.join(dir, packaged.file));
  const vectors = tensors.find((t) => t.name === REFERENCE_VECTORS);
  if (!vectors) throw new PackageError(`${dir}: its reference lacks '${REFERENCE_VECTORS}'`);
  const { k, dims, featureScores, stain, scores, unit = 'images' } = packaged.atypicality;
  return { unit, k, dims, vectors: vectors.data, featureScores, stain, scores };
}

/** What a page, the API and the CLI say of an input's atypicality (null or absent: unknown). */
export function atypicalityText(atypicality: Atypicality | null | undefined): string {
  if (!atypicality)
    return 'atypicality unknown: the model keeps no reference of training inputs of this kind (images or slides)';
  const where = `percentile ${atypicality.percentile} of the training ${atypicality.unit ?? 'images'}' own scores`;
  return atypicality.unlike
    ? `unlike the training data (${where})`
    : `within the training data's range (${where})`;
}
