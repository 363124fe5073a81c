/** API keys: shown once when made, stored only as their SHA-256, revocable, last use kept. */
import { createHash, randomBytes, randomUUID } from 'node:crypto';

import type { Database } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

const COLUMNS: Columns<ApiKeyRecord> = {
  id: ['id', 'text'],
  name: ['name', 'text'],
  prefix: ['prefix', 'text'],
  createdAt: ['created_at', 'text'],
  revokedAt: ['revoked_at', 'text'],
  lastUsedAt: ['last_used_at', 'text'],
};
const FIELDS = columnNames(COLUMNS).join(', ');

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

export class KeyStore {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async create(name: string): Promise<{ key: string; record: ApiKeyRecord }> {
    const key = `pt_${randomBytes(24).toString('base64url')}`;
    const record: ApiKeyRecord = {
      id: randomUUID(),
      name,
      prefix: key.slice(0, 10),
      createdAt: new Date().toISOString(),
      revokedAt: null,
      lastUsedAt: null,
    };
    await this.#db.run('INSERT INTO api_keys (id, name, prefix, hash, created_at) VALUES (?, ?, ?, ?, ?)', [
      record.id,
      name,
      record.prefix,
      hashKey(key),
      record.createdAt,
    ]);
    return { key, record };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${FIELDS} FROM api_keys ORDER BY created_at`,
    );
    return rows.map((r) => fromRow(r, COLUMNS));
  }

  /** True when at least one key is active: the REST API then requires one. */
  async required(): Promise<boolean> {
    const [row] = await this.#db.query<{ n: number | string }>(
      'SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL',
    );
    return Number(row?.n ?? 0) > 0;
  }

  /** The active key this is, its last use noted; undefined for any other string. */
  async verify(key: string): Promise<ApiKeyRecord | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE api_keys SET last_used_at = ? WHERE hash = ? AND revoked_at IS NULL RETURNING ${FIELDS}`,
      [new Date().toISOString(), hashKey(key)],
    );
    return row ? fromRow(row, COLUMNS) : undefined;
  }

  /** Revokes by id or prefix; a revoked key keeps its first revocation time. */
  async revoke(idOrPrefix: string): Promise<ApiKeyRecord | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? OR prefix = ? RETURNING ${FIELDS}`,
      [new Date().toISOString(), idOrPrefix, idOrPrefix],
    );
    return row ? fromRow(row, COLUMNS) : undefined;
  }
}
