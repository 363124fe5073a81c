/**
 * Who saw or changed which patient's data, when and from where: one row per access, appended
 * before the answer leaves the server (so what a client received is on record even if the
 * process is killed right after), never changed or removed (the database refuses both).
 */
import { randomUUID } from 'node:crypto';

import type { Database, SqlValue } from './database.js';
import { columnNames, fromRow, insertSql, toValues, type Columns } from './rows.js';

/**
 * What the audit calls each access, one name per action (`thing.verb`, a list in the plural):
 * routes name theirs from this list, so two routes doing the same cannot drift apart.
 */
export const AUDIT_ACTIONS = [
  'login',
  'logout',
  'prediction.create',
  'predictions.list',
  'prediction.read',
  'prediction.view',
  'image.read',
  'heatmap.read',
  'slide.create',
  'slides.list',
  'slide.read',
  'slide.view',
  'slide.cancel',
  'slide.geojson',
  'slide.heatmap',
  'slide.tile',
  'review.create.prediction',
  'review.create.slide',
  'reviews.list',
  'reviews.queue',
  'reviews.agreement',
  'reviews.settings',
  'models.read',
  'model.compare',
  'model.promote',
  'drift.read',
  'audit.read',
] as const;
export type AuditAction = (typeof AUDIT_ACTIONS)[number];

export interface AuditEntry {
  id: string;
  at: string;
  /** A user's name, a key's name and prefix, or 'anonymous'. */
  actor: string;
  actorKind: 'user' | 'key' | 'anonymous';
  /** What was done (rows written before AUDIT_ACTIONS may carry older names). */
  action: string;
  /** The prediction or slide job, when the access concerns one. */
  caseId: string | null;
  /** The request: method and path. */
  target: string;
  status: number;
  address: string;
  userAgent: string;
}

const COLUMNS: Columns<AuditEntry> = {
  id: ['id', 'text'],
  at: ['at', 'text'],
  actor: ['actor', 'text'],
  actorKind: ['actor_kind', 'text'],
  action: ['action', 'text'],
  caseId: ['case_id', 'text'],
  target: ['target', 'text'],
  status: ['status', 'number'],
  address: ['address', 'text'],
  userAgent: ['user_agent', 'text'],
};

export interface AuditQuery {
  actor?: string;
  caseId?: string;
  /** ISO time: entries at or after it. */
  since?: string;
  limit?: number;
}

export class AuditLog {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async append(entry: Omit<AuditEntry, 'id' | 'at' | 'action'> & { action: AuditAction }): Promise<void> {
    const full: AuditEntry = { id: randomUUID(), at: new Date().toISOString(), ...entry };
    await this.#db.run(insertSql('audit', COLUMNS), toValues(full, COLUMNS));
  }

  /** Newest first. */
  async list(query: AuditQuery = {}): Promise<AuditEntry[]> {
    const where: string[] = [];
    const params: SqlValue[] = [];
    if (query.actor) {
      where.push('actor = ?');
      params.push(query.actor);
    }
    if (query.caseId) {
      where.push('case_id = ?');
      params.push(query.caseId);
    }
    if (query.since) {
      where.push('at >= ?');
      params.push(query.since);
    }
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${columnNames(COLUMNS).join(', ')} FROM audit ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
       ORDER BY at DESC, ${this.#db.insertOrder} DESC LIMIT ?`,
      [...params, query.limit ?? 1000],
    );
    return rows.map((r) => fromRow(r, COLUMNS));
  }
}
