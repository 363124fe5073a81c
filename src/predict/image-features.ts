/**
 * What a prediction keeps of an input besides its verdict: the measures the drift page follows
 * (focus, and the haematoxylin and eosin densities, before normalisation), and the image's mean
 * patch features, from which its atypicality is scored and a package's reference is built. A
 * whole slide's are its tissue tiles' median focus, its overview's stain densities and the mean
 * of every tissue tile's features: the same at training (the bags) and at prediction.
 */
import type { PreprocessedImage } from '../image/preprocess.js';
import type { StainDensity } from '../image/stain-density.js';
import { quantile } from '../stats.js';
import type { FeatureSums } from './patch-outputs.js';

// A type, not an interface: the API's response schema types take it as an open record.
export type InputMeasures = {
  /** Variance of the Laplacian of the haematoxylin channel at the judging scale (the input checks' focus). */
  focus: number;
  /** Mean optical densities of the tissue's stains (image/stain-density.ts). */
  haematoxylin: number;
  eosin: number;
};

const round = (v: number): number => Number(v.toPrecision(4));

export function inputMeasures(image: Pick<PreprocessedImage, 'assessment' | 'stain'>): InputMeasures {
  return {
    focus: round(image.assessment.focus),
    haematoxylin: round(image.stain.haematoxylin),
    eosin: round(image.stain.eosin),
  };
}

/** A slide's measures: its tissue tiles' median focus measure and its overview's stain densities. */
export function slideInputMeasures(stain: StainDensity, tileFocus: ArrayLike<number>): InputMeasures {
  const sorted = Array.from(tileFocus).sort((a, b) => a - b);
  return {
    focus: round(quantile(sorted, 0.5)),
    haematoxylin: round(stain.haematoxylin),
    eosin: round(stain.eosin),
  };
}

/** The mean features of group `index` of `count` patches. */
export function meanFeatures(
  sums: FeatureSums | undefined,
  index: number,
  count: number,
): Float32Array | null {
  if (!sums || count === 0) return null;
  const { dims } = sums;
  return Float32Array.from(sums.sums.subarray(index * dims, (index + 1) * dims), (v) => v / count);
}
