/**
 * Cross-validation summary: the held-out evaluations of k models, each trained without one fold
 * of patients, pooled so that every image is predicted exactly once by a model that never saw
 * its patient. With two dozen patients, one holdout split's accuracy moves by several points with
 * each of them; the pooled figure, with a bootstrap interval over patients and the per-patient
 * results, is the honest one. The out-of-fold scores also fit the calibration and the
 * abstention threshold that the final model carries, and measure them without leakage: each
 * fold's images are judged by a calibration fitted on the other folds only.
 */
import { quantile } from '../stats.js';
import { PathotypeError } from '../errors.js';
import { answer } from '../predict/vote.js';
import { seededRandom } from '../random.js';
import {
  confidenceOf,
  coverageCurve,
  DEFAULT_TARGET_ACCURACY,
  fitCalibration,
  type Calibration,
  type CoveragePoint,
} from './calibration.js';
import type { EvaluatedImage, EvaluationReport } from './report.js';
import { classificationMetrics, metricsFromConfusion, type ClassificationMetrics } from './metrics.js';

export interface FoldSummary {
  fold: number;
  model: string;
  images: number;
  groups: number;
  imageAccuracy: number;
  patchAccuracy: number;
}

export interface GroupResult {
  /** Patient (or case) id, as the catalog groups images. */
  group: string;
  className: string;
  images: number;
  correct: number;
  accuracy: number;
  fold: number;
}

export interface Interval {
  estimate: number;
  low: number;
  high: number;
}

export interface AbstentionSummary {
  /** Fitted on every out-of-fold prediction: what the final model carries. */
  calibration: Calibration;
  /** Each fold judged with a calibration fitted on the other folds (no leakage). */
  crossValidated: { coverage: number; answeredAccuracy: number | null; answered: number; images: number };
  /** Coverage against answered accuracy over all out-of-fold images (calibration fitted on them). */
  curve: CoveragePoint[];
}

export interface CrossValidationReport {
  name: string;
  rule: string;
  folds: FoldSummary[];
  /** Every image once, predicted by the model of the fold that held it out, by the model's rule. */
  image: ClassificationMetrics;
  imageMajority: ClassificationMetrics;
  imageMean: ClassificationMetrics;
  patch: ClassificationMetrics;
  /** 95% intervals from a bootstrap over groups (patients): images of one patient move together. */
  accuracyInterval: Interval;
  balancedAccuracyInterval: Interval;
  groups: GroupResult[];
  /**
   * Every image was its own group (no patient ids, or `groupBy: none`): the folds split images,
   * not patients, and the figures are no estimate for new patients.
   */
  splitByImage: boolean;
  /** Share of groups whose images are mostly (over half) right. */
  groupsMostlyRight: number;
  foldAccuracy: { mean: number; sd: number; min: number; max: number };
  abstention: AbstentionSummary;
  images: (EvaluatedImage & { fold: number; confidence: number; answered: boolean })[];
  createdAt: string;
}

const BOOTSTRAP_SAMPLES = 2000;

function summed(matrices: readonly (readonly (readonly number[])[])[]): number[][] {
  const first = matrices[0];
  if (!first) return [];
  return first.map((row, i) => row.map((_, j) => matrices.reduce((s, m) => s + (m[i]?.[j] ?? 0), 0)));
}

/** Percentile bootstrap over groups: groups are drawn with replacement, their images come along. */
export function bootstrapOverGroups(
  images: readonly { group: string; label: number; predicted: number }[],
  classes: readonly string[],
  seed = 1,
): { accuracy: Interval; balancedAccuracy: Interval; kappa: Interval } {
  const byGroup = new Map<string, { label: number; predicted: number }[]>();
  for (const image of images) byGroup.set(image.group, [...(byGroup.get(image.group) ?? []), image]);
  const groups = [...byGroup.values()];
  const random = seededRandom(seed);
  const accuracies: number[] = [];
  const balanced: number[] = [];
  const kappas: number[] = [];
  for (let b = 0; b < BOOTSTRAP_SAMPLES; b++) {
    const truth: number[] = [];
    const predicted: number[] = [];
    for (let g = 0; g < groups.length; g++) {
      for (const image of groups[Math.floor(random() * groups.length)] ?? []) {
        truth.push(image.label);
        predicted.push(image.predicted);
      }
    }
    const m = classificationMetrics(truth, predicted, classes);
    accuracies.push(m.accuracy);
    balanced.push(m.balancedAccuracy);
    kappas.push(m.kappa);
  }
  const all = classificationMetrics(
    images.map((i) => i.label),
    images.map((i) => i.predicted),
    classes,
  );
  const interval = (values: number[], estimate: number): Interval => {
    values.sort((a, b) => a - b);
    return { estimate, low: quantile(values, 0.025), high: quantile(values, 0.975) };
  };
  return {
    accuracy: interval(accuracies, all.accuracy),
    balancedAccuracy: interval(balanced, all.balancedAccuracy),
    kappa: interval(kappas, all.kappa),
  };
}

/**
 * What a paired comparison reads of a cross-validation (or of a model version's answers on
 * reviewed cases): each predicted item (an image, or a slide under `fileName`) with its patient,
 * true and predicted class.
 */
export interface ComparableRun {
  name: string;
  /** What the items are; images when absent. */
  unit?: 'images' | 'slides';
  images: readonly Pick<EvaluatedImage, 'fileName' | 'caseId' | 'className' | 'predicted'>[];
}

/** Two recipes' cross-validations on the same images (or slides), and the difference of their accuracies. */
export interface PairedComparison {
  a: { name: string; accuracy: number };
  b: { name: string; accuracy: number };
  unit: 'images' | 'slides';
  images: number;
  groups: number;
  /** Accuracy of a minus accuracy of b, with a 95% interval from one bootstrap over patients for both. */
  difference: Interval;
  /** Items that a got right and b wrong, and the other way round. */
  onlyA: number;
  onlyB: number;
}

/**
 * The paired comparison of two cross-validations of the same images (or slides): each patient
 * drawn with replacement carries both recipes' answers on its items, so the interval is that of
 * the difference, far narrower than the two recipes' own intervals side by side.
 */
export function compareCrossValidations(a: ComparableRun, b: ComparableRun, seed = 1): PairedComparison {
  const unit = a.unit ?? 'images';
  if ((b.unit ?? 'images') !== unit)
    throw new PathotypeError(
      'ERR_EVALUATE',
      `${a.name} cross-validated ${unit} and ${b.name} ${b.unit ?? 'images'}: compare two runs on the same ${unit}`,
    );
  const bImages = new Map(b.images.map((i) => [i.fileName, i]));
  const byGroup = new Map<string, { a: boolean; b: boolean }[]>();
  for (const image of a.images) {
    const other = bImages.get(image.fileName);
    if (!other || other.caseId !== image.caseId || other.className !== image.className)
      throw new PathotypeError(
        'ERR_EVALUATE',
        `${b.name} did not predict ${a.name}'s ${unit === 'slides' ? 'slide' : 'image'} ${image.fileName} of ${image.caseId}: the two cross-validations must cover the same ${unit}`,
      );
    const pair = { a: image.predicted === image.className, b: other.predicted === other.className };
    byGroup.set(image.caseId, [...(byGroup.get(image.caseId) ?? []), pair]);
  }
  if (a.images.length !== b.images.length || a.images.length === 0)
    throw new PathotypeError(
      'ERR_EVALUATE',
      `${a.name} has ${a.images.length} ${unit} and ${b.name} ${b.images.length}: the two cross-validations must cover the same ${unit}`,
    );
  const groups = [...byGroup.values()];
  const differenceOf = (drawn: readonly { a: boolean; b: boolean }[][]): number => {
    const pairs = drawn.flat();
    return pairs.reduce((sum, p) => sum + Number(p.a) - Number(p.b), 0) / Math.max(1, pairs.length);
  };
  const random = seededRandom(seed);
  const draws: number[] = [];
  for (let k = 0; k < BOOTSTRAP_SAMPLES; k++)
    draws.push(differenceOf(groups.map(() => groups[Math.floor(random() * groups.length)] ?? [])));
  draws.sort((x, y) => x - y);
  const pairs = groups.flat();
  const accuracy = (key: 'a' | 'b'): number => pairs.filter((p) => p[key]).length / pairs.length;
  return {
    a: { name: a.name, accuracy: accuracy('a') },
    b: { name: b.name, accuracy: accuracy('b') },
    unit,
    images: pairs.length,
    groups: groups.length,
    difference: { estimate: differenceOf(groups), low: quantile(draws, 0.025), high: quantile(draws, 0.975) },
    onlyA: pairs.filter((p) => p.a && !p.b).length,
    onlyB: pairs.filter((p) => p.b && !p.a).length,
  };
}

/** An out-of-fold prediction as calibration sees it: its scores, true and predicted class, and fold. */
export interface OutOfFold {
  scores: readonly number[];
  label: number;
  predicted: number;
  fold: number;
}

/**
 * Calibration and abstention from out-of-fold predictions: the final calibration fitted on all
 * of them (what the final model carries), and the honest estimate fold by fold, each fold's
 * predictions judged by a calibration fitted on the other folds only.
 */
export function abstentionOf(
  items: readonly OutOfFold[],
  folds: readonly number[],
  target: number,
): {
  abstention: AbstentionSummary;
  judged: { confidence: number; answered: boolean }[];
  perFold: Map<number, Calibration>;
} {
  const calibration = fitCalibration(items, target);
  const perFold = new Map<number, Calibration>();
  for (const fold of folds) {
    const others = items.filter((i) => i.fold !== fold);
    perFold.set(fold, folds.length > 1 ? fitCalibration(others, target) : calibration);
  }
  const judged = items.map((item) => {
    const { confidence, status } = answer(item.scores, perFold.get(item.fold) ?? calibration);
    return { confidence, answered: status === 'answered' };
  });
  const answered = items.filter((_, k) => judged[k]?.answered);
  const answeredRight = answered.filter((i) => i.predicted === i.label).length;
  const inSample = items.map((i) => confidenceOf(i.scores, calibration.temperature));
  return {
    abstention: {
      calibration,
      crossValidated: {
        coverage: answered.length / Math.max(1, items.length),
        answeredAccuracy: answered.length > 0 ? answeredRight / answered.length : null,
        answered: answered.length,
        images: items.length,
      },
      curve: coverageCurve(
        inSample.map((j) => j.confidence),
        items.map((i, k) => inSample[k]?.predicted === i.label),
      ),
    },
    judged,
    perFold,
  };
}

/** Each patient's (or case's) images and how many of them were right, by class then name. */
function groupResults(images: readonly (EvaluatedImage & { fold: number })[]): GroupResult[] {
  const groupMap = new Map<string, GroupResult>();
  for (const image of images) {
    const g = groupMap.get(image.caseId) ?? {
      group: image.caseId,
      className: image.className,
      images: 0,
      correct: 0,
      accuracy: 0,
      fold: image.fold,
    };
    g.images++;
    g.correct += image.predicted === image.className ? 1 : 0;
    g.accuracy = g.correct / g.images;
    groupMap.set(image.caseId, g);
  }
  return [...groupMap.values()].sort(
    (a, b) => a.className.localeCompare(b.className) || a.group.localeCompare(b.group),
  );
}

export function crossValidationReport(
  name: string,
  folds: readonly { fold: number; report: EvaluationReport }[],
  options: { targetAccuracy?: number } = {},
): CrossValidationReport {
  const first = folds[0];
  if (!first) throw new PathotypeError('ERR_EVALUATE', 'cross-validation needs at least one evaluated fold');
  const classes = first.report.image.perClass.map((c) => c.className);
  for (const f of folds) {
    const names = f.report.image.perClass.map((c) => c.className);
    if (names.join() !== classes.join())
      throw new PathotypeError(
        'ERR_EVALUATE',
        `fold ${f.fold} has classes ${names.join(', ')}, not ${classes.join(', ')}`,
      );
  }
  const pooled = (pick: (r: EvaluationReport) => ClassificationMetrics): ClassificationMetrics =>
    metricsFromConfusion(summed(folds.map((f) => pick(f.report).confusion)), classes);
  const accuracies = folds.map((f) => f.report.image.accuracy);
  const mean = accuracies.reduce((a, b) => a + b, 0) / accuracies.length;
  const sd =
    accuracies.length > 1
      ? Math.sqrt(accuracies.reduce((s, a) => s + (a - mean) ** 2, 0) / (accuracies.length - 1))
      : 0;
  const images = folds.flatMap(({ fold, report }) => report.images.map((i) => ({ ...i, fold })));
  const label = (i: EvaluatedImage): number => classes.indexOf(i.className);
  const predictedIndex = (i: EvaluatedImage): number => classes.indexOf(i.predicted);

  const { abstention, judged } = abstentionOf(
    images.map((i) => ({ scores: i.scores, label: label(i), predicted: predictedIndex(i), fold: i.fold })),
    folds.map((f) => f.fold),
    options.targetAccuracy ?? DEFAULT_TARGET_ACCURACY,
  );

  const groups = groupResults(images);
  const intervals = bootstrapOverGroups(
    images.map((i) => ({ group: i.caseId, label: label(i), predicted: predictedIndex(i) })),
    classes,
  );
  return {
    name,
    rule: first.report.rule,
    folds: folds.map(({ fold, report }) => ({
      fold,
      model: report.model.name,
      images: report.images.length,
      groups: new Set(report.images.map((i) => i.caseId)).size,
      imageAccuracy: report.image.accuracy,
      patchAccuracy: report.patch.accuracy,
    })),
    image: pooled((r) => r.image),
    imageMajority: pooled((r) => r.imageMajority),
    imageMean: pooled((r) => r.imageMean),
    patch: pooled((r) => r.patch),
    accuracyInterval: intervals.accuracy,
    balancedAccuracyInterval: intervals.balancedAccuracy,
    groups,
    splitByImage: groups.length === images.length,
    groupsMostlyRight: groups.filter((g) => g.accuracy > 0.5).length / Math.max(1, groups.length),
    foldAccuracy: { mean, sd, min: Math.min(...accuracies), max: Math.max(...accuracies) },
    abstention,
    images: images.map((image, k) => ({
      ...image,
      confidence: Number((judged[k]?.confidence ?? 0).toFixed(4)),
      answered: judged[k]?.answered ?? false,
    })),
    createdAt: new Date().toISOString(),
  };
}

/** What a cross-validated figure estimates, in the words every report, page and API field uses. */
export function estimateLabel(splitByImage: boolean): string {
  return splitByImage ? 'split by image: not an estimate for new patients' : 'expected on new patients';
}
