/** Classification metrics from true and predicted class indices. */
export interface ClassMetrics {
  className: string;
  precision: number;
  recall: number;
  f1: number;
  support: number;
}

export interface ClassificationMetrics {
  n: number;
  accuracy: number;
  balancedAccuracy: number;
  /** Cohen's kappa: agreement beyond chance. */
  kappa: number;
  perClass: ClassMetrics[];
  /** confusion[true][predicted] */
  confusion: number[][];
}

export function classificationMetrics(
  truth: ArrayLike<number>,
  predicted: ArrayLike<number>,
  classes: readonly string[],
): ClassificationMetrics {
  const k = classes.length;
  const confusion = Array.from({ length: k }, () => new Array<number>(k).fill(0));
  for (let i = 0; i < truth.length; i++) {
    const row = confusion[truth[i] ?? 0];
    if (row) row[predicted[i] ?? 0] = (row[predicted[i] ?? 0] ?? 0) + 1;
  }
  return metricsFromConfusion(confusion, classes);
}

/** The same metrics from a confusion matrix (confusion[true][predicted]), e.g. one summed over folds. */
export function metricsFromConfusion(
  confusion: readonly (readonly number[])[],
  classes: readonly string[],
): ClassificationMetrics {
  const n = confusion.reduce((s, r) => s + r.reduce((a, b) => a + b, 0), 0);
  const rowSum = confusion.map((r) => r.reduce((a, b) => a + b, 0));
  const colSum = classes.map((_, c) => confusion.reduce((s, r) => s + (r[c] ?? 0), 0));
  const correct = classes.reduce((s, _, c) => s + (confusion[c]?.[c] ?? 0), 0);
  const perClass = classes.map((className, c) => {
    const tp = confusion[c]?.[c] ?? 0;
    const precision = (colSum[c] ?? 0) > 0 ? tp / (colSum[c] ?? 1) : 0;
    const recall = (rowSum[c] ?? 0) > 0 ? tp / (rowSum[c] ?? 1) : 0;
    const f1 = precision + recall > 0 ? (2 * precision * recall) / (precision + recall) : 0;
    return { className, precision, recall, f1, support: rowSum[c] ?? 0 };
  });
  const present = perClass.filter((c) => c.support > 0);
  const po = n > 0 ? correct / n : 0;
  const pe = n > 0 ? classes.reduce((s, _, c) => s + (rowSum[c] ?? 0) * (colSum[c] ?? 0), 0) / (n * n) : 0;
  return {
    n,
    accuracy: po,
    balancedAccuracy: present.length > 0 ? present.reduce((s, c) => s + c.recall, 0) / present.length : 0,
    kappa: pe < 1 ? (po - pe) / (1 - pe) : 1,
    perClass,
    confusion: confusion.map((r) => [...r]),
  };
}
