/**
 * A served case's signals (store/case-signals.ts) from its prediction or its slide job's: the
 * calibrated margin and the atypicality the review queue sorts by, and the input measures the
 * drift page follows.
 */
import type { Verdict } from '../predict/verdict.js';
import type { CaseSignals } from '../store/case-signals.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { SlideJob, SlideSummary } from '../store/slide-jobs.js';

/** Top calibrated probability minus the next one. */
export function marginOf(verdict: Pick<Verdict, 'probabilities'>): number {
  const [top = 0, next = 0] = Object.values(verdict.probabilities).sort((a, b) => b - a);
  return Number((top - next).toFixed(4));
}

export function signalsOf(record: PredictionRecord): CaseSignals {
  const r = record.result;
  return {
    caseKind: 'prediction',
    caseId: record.id,
    createdAt: record.createdAt,
    modelId: record.modelId,
    margin: marginOf(r),
    atypicality: r.atypicality?.percentile ?? null,
    inputs: r.inputs
      ? { scale: r.scale, focus: r.inputs.focus, haematoxylin: r.inputs.haematoxylin, eosin: r.inputs.eosin }
      : null,
  };
}

export function slideSignalsOf(
  job: Pick<SlideJob, 'id' | 'createdAt' | 'modelId'>,
  summary: SlideSummary,
): CaseSignals {
  return {
    caseKind: 'slide',
    caseId: job.id,
    createdAt: job.createdAt,
    modelId: job.modelId,
    margin: marginOf(summary.result),
    atypicality: summary.atypicality?.percentile ?? null,
    inputs: summary.inputs ? { scale: null, ...summary.inputs } : null,
  };
}
