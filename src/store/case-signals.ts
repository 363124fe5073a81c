/**
 * What makes a served case worth a pathologist's look, kept beside its record so lists can sort
 * and count without reading every result: the model's calibrated margin (top class minus the
 * next), the input's atypicality (percentile of the training images' own scores; null when the
 * model carries no reference) and what it was measured from (scale, stain, focus).
 */
import { prefixPattern, type Database } from './database.js';
import type { CaseKind } from './reviews.js';

/** What a case's input measured, for the drift page. */
export interface InputSignals {
  scale: number | null;
  focus: number | null;
  haematoxylin: number | null;
  eosin: number | null;
}

export interface CaseSignals {
  caseKind: CaseKind;
  caseId: string;
  createdAt: string;
  modelId: string;
  /** Top calibrated probability minus the next one: small when the model hesitates. */
  margin: number | null;
  /** Percentile of the training images' own atypicality scores; null: unknown. */
  atypicality: number | null;
  inputs: InputSignals | null;
}

/** A case the review queue may list, newest first. */
export interface QueueCandidate {
  caseKind: CaseKind;
  caseId: string;
  createdAt: string;
  fileName: string;
  modelId: string;
  margin: number | null;
  atypicality: number | null;
  /** A slide job's summary, from which its margin is read. */
  summary?: unknown;
}

export interface CandidateFilter {
  /** name@version, or a name for all its versions. */
  model?: string;
  since?: string;
  until?: string;
  limit: number;
}

const json = (value: unknown): unknown => (typeof value === 'string' ? JSON.parse(value) : value);

export class CaseSignalStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async add(signals: CaseSignals): Promise<void> {
    await this.#db.run(
      `INSERT INTO case_signals (case_kind, case_id, created_at, model_id, margin, atypicality, inputs) VALUES (?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (case_kind, case_id) DO NOTHING`,
      [
        signals.caseKind,
        signals.caseId,
        signals.createdAt,
        signals.modelId,
        signals.margin,
        signals.atypicality,
        signals.inputs ? JSON.stringify(signals.inputs) : null,
      ],
    );
  }

  #where(filter: CandidateFilter, table: string): { sql: string; params: string[] } {
    const where: string[] = [];
    const params: string[] = [];
    if (filter.model) {
      where.push(
        filter.model.includes('@')
          ? `${table}.model_id = ?`
          : `${table}.model_id ${this.#db.like} ? ESCAPE '\\'`,
      );
      params.push(filter.model.includes('@') ? filter.model : prefixPattern(`${filter.model}@`));
    }
    if (filter.since) {
      where.push(`${table}.created_at >= ?`);
      params.push(filter.since);
    }
    if (filter.until) {
      where.push(`${table}.created_at < ?`);
      params.push(filter.until);
    }
    return { sql: where.map((w) => ` AND ${w}`).join(''), params };
  }

  /** Image predictions and finished slide jobs matching the filter, newest first. */
  async candidates(filter: CandidateFilter): Promise<QueueCandidate[]> {
    const p = this.#where(filter, 'p');
    const images = await this.#db.query<Record<string, unknown>>(
      `SELECT p.id, p.created_at, p.file_name, p.model_id, s.margin, s.atypicality FROM predictions p
       LEFT JOIN case_signals s ON s.case_kind = 'prediction' AND s.case_id = p.id
       WHERE 1 = 1${p.sql} ORDER BY p.created_at DESC LIMIT ?`,
      [...p.params, filter.limit],
    );
    const j = this.#where(filter, 'j');
    const slides = await this.#db.query<Record<string, unknown>>(
      `SELECT j.id, j.created_at, j.file_name, j.model_id, j.summary, s.atypicality FROM slide_jobs j
       LEFT JOIN case_signals s ON s.case_kind = 'slide' AND s.case_id = j.id
       WHERE j.status = 'done'${j.sql} ORDER BY j.created_at DESC LIMIT ?`,
      [...j.params, filter.limit],
    );
    const number = (v: unknown): number | null => (v === null || v === undefined ? null : Number(v));
    return [
      ...images.map((r) => ({
        caseKind: 'prediction' as const,
        caseId: String(r.id),
        createdAt: String(r.created_at),
        fileName: String(r.file_name),
        modelId: String(r.model_id),
        margin: number(r.margin),
        atypicality: number(r.atypicality),
      })),
      ...slides.map((r) => ({
        caseKind: 'slide' as const,
        caseId: String(r.id),
        createdAt: String(r.created_at),
        fileName: String(r.file_name),
        modelId: String(r.model_id),
        margin: null,
        atypicality: number(r.atypicality),
        summary: json(r.summary),
      })),
    ]
      .sort((a, b) => b.createdAt.localeCompare(a.createdAt))
      .slice(0, filter.limit);
  }

  /** One model version's cases of one kind (images or slides) since a time, oldest first: what the drift page counts. */
  async since(modelId: string, kind: CaseKind, since: string, limit: number): Promise<CaseSignals[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT case_kind, case_id, created_at, model_id, margin, atypicality, inputs FROM case_signals
       WHERE model_id = ? AND case_kind = ? AND created_at >= ? ORDER BY created_at LIMIT ?`,
      [modelId, kind, since, limit],
    );
    return rows.map((r) => ({
      caseKind: kind,
      caseId: String(r.case_id),
      createdAt: String(r.created_at),
      modelId: String(r.model_id),
      margin: r.margin === null ? null : Number(r.margin),
      atypicality: r.atypicality === null ? null : Number(r.atypicality),
      inputs: r.inputs === null ? null : (json(r.inputs) as InputSignals),
    }));
  }
}
