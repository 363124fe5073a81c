/**
 * How well readers agree with each other and with the model, as a department audits double
 * reading: Cohen's kappa (agreement beyond chance) with a 95% interval from a bootstrap over
 * patients (a patient's cases move together, as in cross-validation; a case without a patient
 * is its own group), the raw share agreeing, and the confusion matrix.
 */
import { bootstrapOverGroups, type Interval } from './cross-validation.js';

/** Two opinions of one case: the first reader's and the second's, or a reader's and the model's. */
export interface PairedOpinion {
  group: string;
  a: string;
  b: string;
}

export interface AgreementSummary {
  /** Opinions compared, and the patients (or cases) they fall in. */
  pairs: number;
  groups: number;
  kappa: Interval;
  /** Share of pairs that agree. */
  agreement: Interval;
  /** Every label given, in the order of `order` (then as met). */
  labels: string[];
  /** confusion[a][b] over `labels`. */
  confusion: number[][];
}

/** Agreement of paired opinions; null when there are none. */
export function agreementOf(
  pairs: readonly PairedOpinion[],
  order: readonly string[] = [],
  seed = 1,
): AgreementSummary | null {
  if (pairs.length === 0) return null;
  const seen = new Set(pairs.flatMap((p) => [p.a, p.b]));
  const labels = [...order.filter((l) => seen.has(l)), ...[...seen].filter((l) => !order.includes(l))];
  const index = new Map(labels.map((l, i) => [l, i]));
  const rows = pairs.map((p) => ({
    group: p.group,
    label: index.get(p.a) ?? 0,
    predicted: index.get(p.b) ?? 0,
  }));
  const intervals = bootstrapOverGroups(rows, labels, seed);
  const confusion = labels.map(() => new Array<number>(labels.length).fill(0));
  for (const r of rows) {
    const row = confusion[r.label];
    if (row) row[r.predicted] = (row[r.predicted] ?? 0) + 1;
  }
  return {
    pairs: pairs.length,
    groups: new Set(pairs.map((p) => p.group)).size,
    kappa: intervals.kappa,
    agreement: intervals.accuracy,
    labels,
    confusion,
  };
}
