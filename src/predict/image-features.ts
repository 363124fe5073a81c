/**
 * What a prediction keeps of an input besides its verdict: the measures the drift page follows
 * (focus, and the haematoxylin and eosin densities, before normalisation), and the image's mean
 * patch features, from which its atypicality is scored and a package's reference is built.
 */
import type { PreprocessedImage } from '../image/preprocess.js';
import type { FeatureSums } from './patch-outputs.js';

// A type, not an interface: the API's response schema types take it as an open record.
export type InputMeasures = {
  /** Variance of the Laplacian of the haematoxylin channel at the judging scale (the input checks' focus). */
  focus: number;
  /** Mean optical densities of the tissue's stains (image/stain-density.ts). */
  haematoxylin: number;
  eosin: number;
};

export function inputMeasures(image: Pick<PreprocessedImage, 'assessment' | 'stain'>): InputMeasures {
  const round = (v: number): number => Number(v.toPrecision(4));
  return {
    focus: round(image.assessment.focus),
    haematoxylin: round(image.stain.haematoxylin),
    eosin: round(image.stain.eosin),
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
