/**
 * What the readers of one case have said, taken together: its consensus, where it stands (no
 * review yet, waiting for a second reader, readers disagreeing, settled), and which reviews a
 * reader may see. A deployment may require two independent readers (a database setting, so that
 * every server of a deployment applies the same rule, changed by an admin without a restart);
 * then a reader sees nobody else's review of a case before submitting their own.
 */
import type { Database } from './database.js';
import type { Review } from './reviews.js';

/** Readers a case needs: one, or two independent ones. */
export type RequiredReaders = 1 | 2;

export const READERS_SETTING = 'review_readers';

/**
 * Where a case stands: no review; fewer readers than required; readers disagreeing (a third
 * reader's review settles it when it sides with one); settled.
 */
export type CaseStatus = 'unreviewed' | 'second-reading' | 'disagreement' | 'settled';

/** 'agree': every reader gave the label; 'majority': more gave it than any other, as many as required. */
export type Agreement = 'agree' | 'majority' | 'disagree';

export interface Consensus {
  /** The most given label, ties to the one given first. */
  label: string;
  agreement: Agreement;
  status: CaseStatus;
}

/** The consensus of a case's current reviews (each reader's latest), in the order first given. */
export function consensusOf(reviews: readonly Pick<Review, 'label'>[], required: RequiredReaders): Consensus {
  const counts = new Map<string, number>();
  for (const r of reviews) counts.set(r.label, (counts.get(r.label) ?? 0) + 1);
  let label = reviews[0]?.label ?? '';
  for (const [l, n] of counts) if (n > (counts.get(label) ?? 0)) label = l;
  const top = counts.get(label) ?? 0;
  const unique = [...counts].every(([l, n]) => l === label || n < top);
  const agreement: Agreement =
    counts.size <= 1 ? 'agree' : unique && top >= required ? 'majority' : 'disagree';
  const status: CaseStatus =
    reviews.length === 0
      ? 'unreviewed'
      : agreement === 'disagree'
        ? 'disagreement'
        : reviews.length < required
          ? 'second-reading'
          : 'settled';
  return { label, agreement, status };
}

/** Every case's current reviews, in the order first given (lists are newest first). */
export function reviewsByCase(reviews: readonly Review[]): Map<string, Review[]> {
  const cases = new Map<string, Review[]>();
  for (const review of [...reviews].reverse()) {
    const key = caseKey(review.caseKind, review.caseId);
    cases.set(key, [...(cases.get(key) ?? []), review]);
  }
  return cases;
}

export function caseKey(kind: Review['caseKind'], id: string): string {
  return `${kind}:${id}`;
}

/** Who asks to see reviews: admins see every review; a reader is known by id, else by name. */
export interface Reader {
  id: string | null;
  name: string;
  admin: boolean;
}

const isBy = (review: Pick<Review, 'reviewer' | 'reviewerId'>, reader: Reader): boolean =>
  reader.id !== null && review.reviewerId !== null
    ? review.reviewerId === reader.id
    : review.reviewer === reader.name;

/**
 * Whether a reader may see a review. With two readers required, another reader's review stays
 * hidden while its case has fewer readers than required: until this reader has submitted theirs
 * (then the case has two), or another has (the third reader of a disagreement sees both opinions).
 */
export function maySee(
  review: Review,
  reader: Reader,
  required: RequiredReaders,
  readersOfCase: number,
): boolean {
  return required === 1 || reader.admin || readersOfCase >= required || isBy(review, reader);
}

/** The reviews of one case (its current ones) a reader may see. */
export function visibleReviews(
  case_: readonly Review[],
  reader: Reader,
  required: RequiredReaders,
): Review[] {
  return case_.filter((r) => maySee(r, reader, required, case_.length));
}

/** Whether the reader has a current review of the case. */
export function hasReviewed(case_: readonly Review[], reader: Reader): boolean {
  return case_.some((r) => isBy(r, reader));
}

/** Cases with at least `readers` current reviews (the ones nobody is blind to under double reading). */
export async function casesRead(db: Database, readers: number): Promise<Set<string>> {
  const rows = await db.query<{ case_kind: Review['caseKind']; case_id: string }>(
    `SELECT case_kind, case_id FROM reviews WHERE id NOT IN (SELECT supersedes FROM reviews WHERE supersedes IS NOT NULL)
     GROUP BY case_kind, case_id HAVING COUNT(*) >= ?`,
    [readers],
  );
  return new Set(rows.map((r) => caseKey(r.case_kind, r.case_id)));
}

/** The deployment's rule, from the settings table every server of a deployment shares. */
export async function requiredReaders(db: Database): Promise<RequiredReaders> {
  const [row] = await db.query<{ value: string }>('SELECT value FROM settings WHERE name = ?', [
    READERS_SETTING,
  ]);
  return row?.value === '2' ? 2 : 1;
}

export async function setRequiredReaders(db: Database, readers: RequiredReaders): Promise<void> {
  await db.run(
    'INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value',
    [READERS_SETTING, String(readers)],
  );
}
