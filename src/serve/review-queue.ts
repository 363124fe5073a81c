/**
 * The review queue: the served cases that still need a reader, the most informative first.
 * Order (README "Review and retraining"): inputs unlike the training data (atypicality beyond
 * the 99th percentile) first, then the model's lowest calibrated margin (its top class's
 * probability minus the next one's: where it hesitates, a pathologist's label teaches it most),
 * cases of unknown margin last, and newest first among equals. A case leaves the queue once it is
 * settled (its readers agree, or a third reader sided with one); a reader never sees a case they
 * have reviewed already. The newest LIMITS.reviewQueueCases cases of each kind are considered.
 */
import { LIMITS } from '../limits.js';
import { UNLIKE_PERCENTILE } from '../predict/atypicality.js';
import type { QueueCandidate } from '../store/case-signals.js';
import type { ServerStore } from '../store/open.js';
import {
  caseKey,
  consensusOf,
  hasReviewed,
  requiredReaders,
  reviewsByCase,
  type CaseStatus,
  type Reader,
} from '../store/review-cases.js';
import { marginOf } from './case-signals.js';

/** The statuses a queue lists: all that need a reader, or one of them. */
export const QUEUE_STATUSES = ['needed', 'unreviewed', 'second-reading', 'disagreement'] as const;
export type QueueStatus = (typeof QUEUE_STATUSES)[number];

export interface QueueFilter {
  /** name@version, or a name for all its versions. */
  model?: string;
  since?: string;
  until?: string;
  status: QueueStatus;
  limit: number;
  offset: number;
}

// A type, not an interface: the API's response schema types take it as an open record.
export type QueueItem = Omit<QueueCandidate, 'summary'> & {
  status: CaseStatus;
  readers: number;
  unlike: boolean;
};

function slideMargin(candidate: QueueCandidate): number | null {
  const summary = candidate.summary as { result?: { probabilities?: Record<string, number> } } | null;
  return summary?.result?.probabilities ? marginOf({ probabilities: summary.result.probabilities }) : null;
}

/** Unlike first, then the smallest margin, unknown margins last, then newest. */
export function queueOrder(a: QueueItem, b: QueueItem): number {
  if (a.unlike !== b.unlike) return a.unlike ? -1 : 1;
  if (a.margin !== b.margin) {
    if (a.margin === null) return 1;
    if (b.margin === null) return -1;
    return a.margin - b.margin;
  }
  return b.createdAt.localeCompare(a.createdAt);
}

export async function reviewQueue(
  store: ServerStore,
  reader: Reader,
  filter: QueueFilter,
): Promise<{ total: number; items: QueueItem[] }> {
  const required = await requiredReaders(store.db);
  const candidates = await store.signals.candidates({
    ...(filter.model ? { model: filter.model } : {}),
    ...(filter.since ? { since: filter.since } : {}),
    ...(filter.until ? { until: filter.until } : {}),
    limit: LIMITS.reviewQueueCases,
  });
  const oldest = candidates[candidates.length - 1]?.createdAt;
  // A review is never older than its case: the reviews since the oldest candidate are all it needs.
  const reviews = oldest
    ? await store.reviews.list({ since: oldest, limit: 4 * LIMITS.reviewQueueCases })
    : [];
  const byCase = reviewsByCase(reviews);
  const items: QueueItem[] = [];
  for (const candidate of candidates) {
    const current = byCase.get(caseKey(candidate.caseKind, candidate.caseId)) ?? [];
    const { status } = consensusOf(current, required);
    if (status === 'settled' || hasReviewed(current, reader)) continue;
    if (filter.status !== 'needed' && status !== filter.status) continue;
    items.push({
      caseKind: candidate.caseKind,
      caseId: candidate.caseId,
      createdAt: candidate.createdAt,
      fileName: candidate.fileName,
      modelId: candidate.modelId,
      atypicality: candidate.atypicality,
      margin: candidate.caseKind === 'slide' ? slideMargin(candidate) : candidate.margin,
      status,
      readers: current.length,
      unlike: candidate.atypicality !== null && candidate.atypicality > UNLIKE_PERCENTILE,
    });
  }
  items.sort(queueOrder);
  return { total: items.length, items: items.slice(filter.offset, filter.offset + filter.limit) };
}
