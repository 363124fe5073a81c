/**
 * Who saw or changed which patient's data, when and from where: one row per access, appended
 * before the answer leaves the server (so what a client received is on record even if the
 * process is killed right after), never changed or removed (the database refuses both). Each
 * row carries its place in a chain and a SHA-256 over its content and the previous row's hash,
 * so a row changed, removed or inserted by someone who dropped those triggers shows (verify()).
 */
import { createHash, randomUUID } from 'node:crypto';

import type { Database, SqlValue } from './database.js';
import { columnNames, fromRow, placeholders, toValues, type Columns } from './rows.js';

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
  'users.list',
  'user.unlock',
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

/** A row's hash: its place in the chain, the previous row's hash and every column, in order. */
function chainHash(seq: number, previous: string, entry: AuditEntry): string {
  const content = [seq, previous, ...toValues(entry, COLUMNS)];
  return createHash('sha256').update(JSON.stringify(content)).digest('hex');
}

/** What `audit --verify` found: the chain's length and head, and the first row that breaks it. */
export interface AuditVerification {
  rows: number;
  /** Rows written before the chain began (an older pathotype), not covered by it. */
  unchained: number;
  head: { seq: number; hash: string } | null;
  broken: {
    kind: 'changed' | 'removed' | 'inserted';
    seq: number | null;
    id: string | null;
    detail: string;
  } | null;
}

/** Appends retried when another server took the same place in the chain first. */
const APPEND_TRIES = 20;
/** Rows verify() reads at a time. */
const VERIFY_PAGE = 5000;

type ChainedRow = Record<string, unknown> & { chain_seq: number | string; hash: string | null };

export class AuditLog {
  readonly #db: Database;
  /** This process's appends, one at a time, so they do not race for the chain's next place. */
  #appending: Promise<unknown> = Promise.resolve();

  constructor(db: Database) {
    this.#db = db;
  }

  append(entry: Omit<AuditEntry, 'id' | 'at' | 'action'> & { action: AuditAction }): Promise<void> {
    const full: AuditEntry = { id: randomUUID(), at: new Date().toISOString(), ...entry };
    const done = this.#appending.then(() => this.#chain(full));
    this.#appending = done.catch(() => undefined);
    return done;
  }

  /** Inserts the row at the chain's next place; another server's row there first: the next. */
  async #chain(entry: AuditEntry): Promise<void> {
    const names = [...columnNames(COLUMNS), 'chain_seq', 'hash'];
    for (let attempt = 0; attempt < APPEND_TRIES; attempt++) {
      const [last] = await this.#db.query<{ chain_seq: number | string; hash: string }>(
        'SELECT chain_seq, hash FROM audit WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1',
      );
      const seq = Number(last?.chain_seq ?? 0) + 1;
      const inserted = await this.#db.run(
        `INSERT INTO audit (${names.join(', ')}) VALUES (${placeholders(names.length)}) ON CONFLICT (chain_seq) DO NOTHING`,
        [...toValues(entry, COLUMNS), seq, chainHash(seq, last?.hash ?? '', entry)],
      );
      if (inserted === 1) return;
    }
    throw new Error(`the audit row could not take a place in the chain after ${APPEND_TRIES} tries`);
  }

  /**
   * Walks the chain in order and recomputes every hash: the first row whose content does not
   * give its hash was changed, a gap in the places is a removal, and a row without a place
   * written after the chain began, or one that breaks the order, was inserted.
   */
  async verify(anchor?: { seq: number; hash: string }): Promise<AuditVerification> {
    const { insertOrder } = this.#db;
    const [first] = await this.#db.query<{ at_order: number | string | null }>(
      `SELECT MIN(${insertOrder}) AS at_order FROM audit WHERE chain_seq IS NOT NULL`,
    );
    const start = first?.at_order ?? null;
    const [loose] = await this.#db.query<{ n: number | string }>(
      'SELECT COUNT(*) AS n FROM audit WHERE chain_seq IS NULL',
    );
    const [late] =
      start === null
        ? []
        : await this.#db.query<{ id: string }>(
            `SELECT id FROM audit WHERE chain_seq IS NULL AND ${insertOrder} > ? ORDER BY ${insertOrder} LIMIT 1`,
            [Number(start)],
          );
    const walked = await this.#walk();
    walked.broken ??= await this.#checkAnchor(anchor);
    const unchained = Number(loose?.n ?? 0) - (late ? 1 : 0);
    const broken =
      walked.broken ??
      (late
        ? {
            kind: 'inserted' as const,
            seq: null,
            id: late.id,
            detail: 'a row without a place in the chain, written after it began',
          }
        : null);
    return { rows: walked.rows + Number(loose?.n ?? 0), unchained, head: walked.head, broken };
  }

  /**
   * A head an earlier verify printed (kept elsewhere) must still be in the chain with its hash:
   * catches rows removed from the end, or a chain rewritten whole by someone who knows how.
   */
  async #checkAnchor(anchor?: { seq: number; hash: string }): Promise<AuditVerification['broken']> {
    if (!anchor) return null;
    const [row] = await this.#db.query<{ hash: string | null; id: string }>(
      'SELECT hash, id FROM audit WHERE chain_seq = ?',
      [anchor.seq],
    );
    if (!row)
      return {
        kind: 'removed',
        seq: anchor.seq,
        id: null,
        detail: `row ${anchor.seq}, the head you kept, is gone`,
      };
    if (row.hash !== anchor.hash)
      return {
        kind: 'changed',
        seq: anchor.seq,
        id: row.id,
        detail: `row ${anchor.seq} has another hash than the head you kept: the chain up to it was rewritten`,
      };
    return null;
  }

  /**
   * Whether the row after place `seq` (from the page, else read) carries the hash of place `seq`:
   * then the row at `seq` was inserted and the later ones renumbered to make room.
   */
  async #heldPlace(next: ChainedRow | undefined, seq: number, previous: string): Promise<boolean> {
    const [row] = next
      ? [next]
      : await this.#db.query<ChainedRow>(
          `SELECT ${columnNames(COLUMNS).join(', ')}, chain_seq, hash FROM audit WHERE chain_seq = ?`,
          [seq + 1],
        );
    return (
      row !== undefined &&
      Number(row.chain_seq) === seq + 1 &&
      row.hash === chainHash(seq, previous, fromRow(row, COLUMNS))
    );
  }

  async #walk(): Promise<Pick<AuditVerification, 'head' | 'broken'> & { rows: number }> {
    let previous = '';
    let expected = 1;
    let rows = 0;
    let head: AuditVerification['head'] = null;
    for (;;) {
      const page = await this.#db.query<ChainedRow>(
        `SELECT ${columnNames(COLUMNS).join(', ')}, chain_seq, hash FROM audit
         WHERE chain_seq >= ? ORDER BY chain_seq LIMIT ?`,
        [expected, VERIFY_PAGE],
      );
      for (const [i, row] of page.entries()) {
        const seq = Number(row.chain_seq);
        const entry = fromRow(row, COLUMNS);
        rows++;
        if (seq > expected)
          return {
            rows,
            head,
            broken: {
              kind: 'removed',
              seq: expected,
              id: null,
              detail: `rows ${expected}${seq - 1 > expected ? `-${seq - 1}` : ''} of the chain are missing, before row ${seq} (${entry.id})`,
            },
          };
        const hash = row.hash ?? '';
        if (hash !== chainHash(seq, previous, entry))
          return {
            rows,
            head,
            broken: (await this.#heldPlace(page[i + 1], seq, previous))
              ? {
                  kind: 'inserted',
                  seq,
                  id: entry.id,
                  detail: `row ${seq} (${entry.id}, ${entry.at}) was put into the chain: the row after it holds this place's hash`,
                }
              : {
                  kind: 'changed',
                  seq,
                  id: entry.id,
                  detail: `row ${seq} (${entry.id}, ${entry.at}) does not match its hash: changed, or put in another row's place`,
                },
          };
        previous = hash;
        head = { seq, hash };
        expected = seq + 1;
      }
      if (page.length < VERIFY_PAGE) return { rows, head, broken: null };
    }
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
