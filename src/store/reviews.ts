/**
 * A pathologist's diagnosis of a served case (an image prediction or a slide job): append-only,
 * like the audit. A reader who reviews a case again adds a review that supersedes their earlier
 * one, so the history of every reader's opinion stays on record; the current view is each
 * reader's latest review of each case.
 */
import { randomUUID } from 'node:crypto';

import type { Database, SqlValue } from './database.js';
import { columnNames, fromRow, insertSql, toValues, type Columns } from './rows.js';

export type CaseKind = 'prediction' | 'slide';

/** The label for a diagnosis outside the model's classes; it carries its own text. */
export const OTHER_LABEL = 'other';

// A type, not an interface: the API's response schema types take it as an open record.
export type Review = {
  id: string;
  createdAt: string;
  caseKind: CaseKind;
  caseId: string;
  /** The reader: a user's name, or a key's name and prefix. */
  reviewer: string;
  /** A user's or key's id; null on an open server. */
  reviewerId: string | null;
  /** One of the model's classes, or OTHER_LABEL. */
  label: string;
  /** What "other" is, in the reader's words; null for a class. */
  otherText: string | null;
  /** The patient the case belongs to, as the reader gave it. */
  patient: string | null;
  comment: string;
  /** The model that answered and what it said, so agreement with the model is on the record. */
  modelId: string;
  predicted: string | null;
  /** The same reader's earlier review of the case that this one replaces. */
  supersedes: string | null;
};

const COLUMNS: Columns<Review> = {
  id: ['id', 'text'],
  createdAt: ['created_at', 'text'],
  caseKind: ['case_kind', 'text'],
  caseId: ['case_id', 'text'],
  reviewer: ['reviewer', 'text'],
  reviewerId: ['reviewer_id', 'text'],
  label: ['label', 'text'],
  otherText: ['other_text', 'text'],
  patient: ['patient', 'text'],
  comment: ['comment', 'text'],
  modelId: ['model_id', 'text'],
  predicted: ['predicted', 'text'],
  supersedes: ['supersedes', 'text'],
};

export interface ReviewQuery {
  /** ISO time: reviews made at or after it. */
  since?: string;
  label?: string;
  reviewer?: string;
  caseKind?: CaseKind;
  caseId?: string;
  /** Superseded reviews too (the history); default only each reader's latest. */
  history?: boolean;
  limit?: number;
}

export type NewReview = Omit<Review, 'id' | 'createdAt' | 'supersedes'>;

export class ReviewStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async add(review: NewReview): Promise<Review> {
    const [earlier] = await this.list({
      caseKind: review.caseKind,
      caseId: review.caseId,
      reviewer: review.reviewer,
      limit: 1,
    });
    const full: Review = {
      id: randomUUID(),
      createdAt: new Date().toISOString(),
      ...review,
      // A patient once given stays with the reader's later opinions of the case.
      patient: review.patient ?? earlier?.patient ?? null,
      supersedes: earlier?.id ?? null,
    };
    await this.#db.run(insertSql('reviews', COLUMNS), toValues(full, COLUMNS));
    return full;
  }

  /** Newest first. */
  async list(query: ReviewQuery = {}): Promise<Review[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    const add = (clause: string, value: string | undefined): void => {
      if (value === undefined) return;
      where.push(clause);
      params.push(value);
    };
    add('created_at >= ?', query.since);
    add('label = ?', query.label);
    add('reviewer = ?', query.reviewer);
    add('case_kind = ?', query.caseKind);
    add('case_id = ?', query.caseId);
    if (!query.history) where.push('id NOT IN (SELECT supersedes FROM reviews WHERE supersedes IS NOT NULL)');
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${columnNames(COLUMNS).join(', ')} FROM reviews ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY created_at DESC, ${this.#db.insertOrder} DESC LIMIT ?`,
      [...params, query.limit ?? 10_000],
    );
    return rows.map((r) => fromRow(r, COLUMNS));
  }
}

/** One CSV line, quoting fields that need it. */
export function csvLine(fields: readonly (string | number | null)[]): string {
  return fields
    .map((f) => {
      const s = f === null ? '' : String(f);
      return /[",\n\r]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s;
    })
    .join(',');
}

export const REVIEW_CSV_HEADER = [
  'id',
  'created_at',
  'case_kind',
  'case_id',
  'reviewer',
  'label',
  'other_text',
  'patient',
  'comment',
  'model_id',
  'predicted',
  'supersedes',
] as const;

export function reviewsCsv(reviews: readonly Review[]): string {
  const rows = reviews.map((r) =>
    csvLine([
      r.id,
      r.createdAt,
      r.caseKind,
      r.caseId,
      r.reviewer,
      r.label,
      r.otherText,
      r.patient,
      r.comment,
      r.modelId,
      r.predicted,
      r.supersedes,
    ]),
  );
  return [csvLine(REVIEW_CSV_HEADER), ...rows].join('\n') + '\n';
}
