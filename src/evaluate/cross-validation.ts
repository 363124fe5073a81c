/**
 * Cross-validation summary: the held-out evaluations of k models, each trained without one fold
 * of cases, pooled so that every image is predicted exactly once by a model that never saw its
 * case. With a few dozen cases, one holdout split's accuracy moves by several points with each
 * case; the pooled figure over all images, with the spread between folds, is the honest one.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import type { EvaluatedImage, EvaluationReport } from './evaluate.js';
import { metricsFromConfusion, type ClassificationMetrics } from './metrics.js';

export interface FoldSummary {
  fold: number;
  model: string;
  images: number;
  cases: number;
  imageAccuracy: number;
  imageAccuracyMean: number;
  patchAccuracy: number;
}

export interface CrossValidationReport {
  name: string;
  folds: FoldSummary[];
  /** Every image once, predicted by the model of the fold that held it out. */
  imageMajority: ClassificationMetrics;
  imageMean: ClassificationMetrics;
  patch: ClassificationMetrics;
  /** Image accuracy (majority vote) across folds. */
  foldAccuracy: { mean: number; sd: number; min: number; max: number };
  images: (EvaluatedImage & { fold: number })[];
  createdAt: string;
}

function summed(matrices: readonly (readonly (readonly number[])[])[]): number[][] {
  const first = matrices[0];
  if (!first) return [];
  return first.map((row, i) => row.map((_, j) => matrices.reduce((s, m) => s + (m[i]?.[j] ?? 0), 0)));
}

export function crossValidationReport(
  name: string,
  folds: readonly { fold: number; report: EvaluationReport }[],
): CrossValidationReport {
  const first = folds[0];
  if (!first) throw new PathotypeError('ERR_EVALUATE', 'cross-validation needs at least one evaluated fold');
  const classes = first.report.imageMajority.perClass.map((c) => c.className);
  for (const f of folds) {
    const names = f.report.imageMajority.perClass.map((c) => c.className);
    if (names.join() !== classes.join())
      throw new PathotypeError(
        'ERR_EVALUATE',
        `fold ${f.fold} has classes ${names.join(', ')}, not ${classes.join(', ')}`,
      );
  }
  const pooled = (pick: (r: EvaluationReport) => ClassificationMetrics): ClassificationMetrics =>
    metricsFromConfusion(summed(folds.map((f) => pick(f.report).confusion)), classes);
  const accuracies = folds.map((f) => f.report.imageMajority.accuracy);
  const mean = accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
  const sd =
    accuracies.length > 1
      ? Math.sqrt(accuracies.reduce((s, a) => s + (a - mean) ** 2, 0) / (accuracies.length - 1))
      : 0;
  return {
    name,
    folds: folds.map(({ fold, report }) => ({
      fold,
      model: report.model.name,
      images: report.images.length,
      cases: new Set(report.images.map((i) => i.caseId)).size,
      imageAccuracy: report.imageMajority.accuracy,
      imageAccuracyMean: report.imageMean.accuracy,
      patchAccuracy: report.patch.accuracy,
    })),
    imageMajority: pooled((r) => r.imageMajority),
    imageMean: pooled((r) => r.imageMean),
    patch: pooled((r) => r.patch),
    foldAccuracy: { mean, sd, min: Math.min(...accuracies), max: Math.max(...accuracies) },
    images: folds.flatMap(({ fold, report }) => report.images.map((i) => ({ ...i, fold }))),
    createdAt: new Date().toISOString(),
  };
}

/** Writes cross-validation.json into `dir`; returns its path. */
export async function writeCrossValidation(dir: string, report: CrossValidationReport): Promise<string> {
  const file = path.join(dir, 'cross-validation.json');
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  return file;
}
