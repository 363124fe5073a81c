/**
 * Knowing when not to answer: temperature scaling (Guo et al. 2017) of an image's class scores,
 * fitted on out-of-fold predictions, and a confidence threshold below which the answer is
 * "uncertain, refer to a pathologist". Both are chosen by cross-validation, never on the images
 * they are then judged on.
 */
import type { Calibration } from '../model/package.js';
import { answer, softmax } from '../predict/vote.js';

export type { Calibration };

/** The accuracy on answered images that the threshold aims at unless told otherwise. */
export const DEFAULT_TARGET_ACCURACY = 0.95;
/** Fewest answered images a threshold must keep to count as reaching the target. */
const MIN_ANSWERED = 5;

export interface Scored {
  scores: readonly number[];
  label: number;
}

function negativeLogLikelihood(items: readonly Scored[], temperature: number): number {
  let sum = 0;
  for (const item of items)
    sum -= Math.log(Math.max(softmax(item.scores, temperature)[item.label] ?? 0, 1e-12));
  return sum / Math.max(1, items.length);
}

/** The temperature of least negative log-likelihood, searched on a log scale from 0.05 to 50. */
export function fitTemperature(items: readonly Scored[]): number {
  if (items.length === 0) return 1;
  let best = 1;
  let bestLoss = Infinity;
  for (let e = -3; e <= 3.9; e += 0.05) {
    const t = Math.exp(e);
    const loss = negativeLogLikelihood(items, t);
    if (loss < bestLoss) {
      bestLoss = loss;
      best = t;
    }
  }
  return Number(best.toFixed(4));
}

export function confidenceOf(
  scores: readonly number[],
  temperature: number,
): { predicted: number; confidence: number } {
  const { predicted, confidence } = answer(scores, { temperature, threshold: 0 });
  return { predicted, confidence };
}

export interface CoveragePoint {
  threshold: number;
  /** Share of images answered (confidence at or above the threshold). */
  coverage: number;
  /** Accuracy on the answered images; null when none is answered. */
  accuracy: number | null;
}

/** Coverage and answered accuracy as the threshold rises, one point per distinct confidence. */
export function coverageCurve(confidences: readonly number[], correct: readonly boolean[]): CoveragePoint[] {
  const order = confidences.map((c, i) => [c, correct[i] ?? false] as const).sort((a, b) => b[0] - a[0]);
  const points: CoveragePoint[] = [];
  let right = 0;
  order.forEach(([confidence, ok], i) => {
    right += ok ? 1 : 0;
    if (i + 1 < order.length && order[i + 1]?.[0] === confidence) return;
    points.push({ threshold: confidence, coverage: (i + 1) / order.length, accuracy: right / (i + 1) });
  });
  return points.reverse();
}

/**
 * The lowest threshold whose answered images reach the target accuracy (at least a few of
 * them); above 1 (answer nothing) when no threshold does.
 */
export function chooseThreshold(
  confidences: readonly number[],
  correct: readonly boolean[],
  target: number,
): number {
  const curve = coverageCurve(confidences, correct);
  for (const point of curve) {
    const answered = Math.round(point.coverage * confidences.length);
    if (answered >= MIN_ANSWERED && (point.accuracy ?? 0) >= target)
      return Number(point.threshold.toFixed(6));
  }
  return 1.01;
}

export function fitCalibration(items: readonly Scored[], target = DEFAULT_TARGET_ACCURACY): Calibration {
  const temperature = fitTemperature(items);
  const judged = items.map((item) => confidenceOf(item.scores, temperature));
  const threshold = chooseThreshold(
    judged.map((j) => j.confidence),
    judged.map((j, i) => j.predicted === items[i]?.label),
    target,
  );
  return { temperature, threshold, target };
}
