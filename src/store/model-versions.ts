/**
 * Which version of each named model answers: the promotions (append-only: promoting a challenger
 * and rolling back are the same row, so the history of who made which version active stays on
 * record), the comparisons of a challenger with the active version on reviewed cases, and each
 * version's answers to reviewed cases it was run on for such a comparison.
 */
import { randomUUID } from 'node:crypto';

import type { Database } from './database.js';
import type { CaseKind } from './reviews.js';
import { columnNames, fromRow, insertSql, toValues, type Columns } from './rows.js';

// Types, not interfaces: the API's response schema types take them as open records.
export type Promotion = {
  id: string;
  at: string;
  name: string;
  /** name@version made active. */
  modelId: string;
  /** The version active before; null for the first. */
  previous: string | null;
  /** Who: a user's name, a key's name, or 'serve' for the first version a server registered. */
  actor: string;
  /** The comparison the promotion followed; null for a rollback or the first version. */
  comparisonId: string | null;
};

const PROMOTION_COLUMNS: Columns<Promotion> = {
  id: ['id', 'text'],
  at: ['at', 'text'],
  name: ['name', 'text'],
  modelId: ['model_id', 'text'],
  previous: ['previous', 'text'],
  actor: ['actor', 'text'],
  comparisonId: ['comparison_id', 'text'],
};

export type StoredComparison<R> = {
  id: string;
  createdAt: string;
  name: string;
  champion: string;
  challenger: string;
  actor: string;
  result: R;
};

const COMPARISON_COLUMNS: Columns<StoredComparison<unknown>> = {
  id: ['id', 'text'],
  createdAt: ['created_at', 'text'],
  name: ['name', 'text'],
  champion: ['champion', 'text'],
  challenger: ['challenger', 'text'],
  actor: ['actor', 'text'],
  result: ['result', 'json'],
};

/** A model's answer to a case, or why it gave none. */
export type CaseAnswer = { predicted: string; status: string; confidence: number } | { refused: string };

export class ModelVersions {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  /** The newest promotion of every name: its active version. */
  async active(): Promise<Map<string, Promotion>> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${columnNames(PROMOTION_COLUMNS).join(', ')} FROM model_promotions ORDER BY at, ${this.#db.insertOrder}`,
    );
    const active = new Map<string, Promotion>();
    for (const row of rows) {
      const promotion = fromRow(row, PROMOTION_COLUMNS);
      active.set(promotion.name, promotion);
    }
    return active;
  }

  /** A name's promotions, newest first. */
  async history(name: string): Promise<Promotion[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${columnNames(PROMOTION_COLUMNS).join(', ')} FROM model_promotions WHERE name = ? ORDER BY at DESC, ${this.#db.insertOrder} DESC`,
      [name],
    );
    return rows.map((r) => fromRow(r, PROMOTION_COLUMNS));
  }

  async promote(promotion: Omit<Promotion, 'id' | 'at'>): Promise<Promotion> {
    const full: Promotion = { id: randomUUID(), at: new Date().toISOString(), ...promotion };
    await this.#db.run(insertSql('model_promotions', PROMOTION_COLUMNS), toValues(full, PROMOTION_COLUMNS));
    return full;
  }

  async addComparison<R>(
    comparison: Omit<StoredComparison<R>, 'id' | 'createdAt'>,
  ): Promise<StoredComparison<R>> {
    const full = { id: randomUUID(), createdAt: new Date().toISOString(), ...comparison };
    await this.#db.run(
      insertSql('model_comparisons', COMPARISON_COLUMNS),
      toValues(full as StoredComparison<unknown>, COMPARISON_COLUMNS),
    );
    return full;
  }

  /** A name's comparisons, newest first (of one challenger when given). */
  async comparisons<R>(name: string, challenger?: string, limit = 20): Promise<StoredComparison<R>[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${columnNames(COMPARISON_COLUMNS).join(', ')} FROM model_comparisons WHERE name = ?${challenger ? ' AND challenger = ?' : ''}
       ORDER BY created_at DESC, ${this.#db.insertOrder} DESC LIMIT ?`,
      [name, ...(challenger ? [challenger] : []), limit],
    );
    return rows.map((r) => fromRow(r, COMPARISON_COLUMNS) as StoredComparison<R>);
  }

  async answer(kind: CaseKind, caseId: string, modelId: string): Promise<CaseAnswer | undefined> {
    const [row] = await this.#db.query<{ answer: unknown }>(
      'SELECT answer FROM case_answers WHERE case_kind = ? AND case_id = ? AND model_id = ?',
      [kind, caseId, modelId],
    );
    if (!row) return undefined;
    return (typeof row.answer === 'string' ? JSON.parse(row.answer) : row.answer) as CaseAnswer;
  }

  async saveAnswer(kind: CaseKind, caseId: string, modelId: string, answer: CaseAnswer): Promise<void> {
    await this.#db.run(
      `INSERT INTO case_answers (case_kind, case_id, model_id, created_at, answer) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (case_kind, case_id, model_id) DO NOTHING`,
      [kind, caseId, modelId, new Date().toISOString(), JSON.stringify(answer)],
    );
  }
}
