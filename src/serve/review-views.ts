/**
 * Reviews as a reader may see them (store/review-cases.ts has the rule): one case's on its
 * result page, and a list through the API. Under double reading a reader sees another reader's
 * review of a case only once the case has its two readers, so nothing this server answers tells
 * the second reader what the first said.
 */
import type { Principal } from './access.js';
import type { ServerStore } from '../store/open.js';
import {
  caseKey,
  casesRead,
  consensusOf,
  maySee,
  requiredReaders,
  visibleReviews,
  type CaseStatus,
  type Consensus,
  type Reader,
  type RequiredReaders,
} from '../store/review-cases.js';
import type { CaseKind, Review } from '../store/reviews.js';

export function readerOf(principal: Principal | null): Reader {
  if (!principal) return { id: null, name: 'anonymous', admin: false };
  return { id: principal.id, name: principal.name, admin: principal.role === 'admin' };
}

/** One case's reviews as this reader may see them, and where the case stands. */
export interface CaseReviewView {
  required: RequiredReaders;
  /** Oldest first. */
  visible: Review[];
  /** Reviews of the case this reader may not see yet. */
  hidden: number;
  status: CaseStatus;
  /** The consensus, once this reader may see every review of the case. */
  consensus: Consensus | null;
}

export async function caseReviewView(
  store: ServerStore,
  principal: Principal | null,
  kind: CaseKind,
  id: string,
): Promise<CaseReviewView> {
  const required = await requiredReaders(store.db);
  const all = (await store.reviews.list({ caseKind: kind, caseId: id })).reverse();
  const visible = visibleReviews(all, readerOf(principal), required);
  const consensus = consensusOf(all, required);
  return {
    required,
    visible,
    hidden: all.length - visible.length,
    status: consensus.status,
    consensus: visible.length === all.length && all.length > 0 ? consensus : null,
  };
}

/** A list of reviews with those this reader may not see yet left out. */
export async function visibleList(
  store: ServerStore,
  principal: Principal | null,
  reviews: readonly Review[],
): Promise<Review[]> {
  const required = await requiredReaders(store.db);
  const reader = readerOf(principal);
  if (required === 1 || reader.admin) return [...reviews];
  const read = await casesRead(store.db, required);
  return reviews.filter((r) =>
    maySee(r, reader, required, read.has(caseKey(r.caseKind, r.caseId)) ? required : 1),
  );
}
