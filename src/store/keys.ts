/**
 * API keys: shown once when made, stored only as their SHA-256, revocable, optionally expiring,
 * last use kept. A key belongs to a user and carries that user's role or a narrower one; a key
 * without a user (a service key for a slide viewer or a script) carries the role it was given.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';

import { ConfigError } from '../errors.js';
import type { Database } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';
import { Settings } from './settings.js';
import { isRole, type Role } from './users.js';

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
  userId: string | null;
  /** The most the key may do; null on keys made before roles (they may what a pathologist may). */
  role: Role | null;
  expiresAt: string | null;
}

export interface NewKey {
  name: string;
  userId?: string | null;
  role: Role;
  expiresAt?: string | null;
}

const COLUMNS: Columns<ApiKeyRecord> = {
  id: ['id', 'text'],
  name: ['name', 'text'],
  prefix: ['prefix', 'text'],
  createdAt: ['created_at', 'text'],
  revokedAt: ['revoked_at', 'text'],
  lastUsedAt: ['last_used_at', 'text'],
  userId: ['user_id', 'text'],
  role: ['role', 'text'],
  expiresAt: ['expires_at', 'text'],
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

  async create(options: NewKey): Promise<{ key: string; record: ApiKeyRecord }> {
    if (options.name.length === 0 || options.name.length > 100)
      throw new ConfigError('a key name is 1-100 characters');
    if (!isRole(options.role)) throw new ConfigError(`unknown role '${String(options.role)}'`);
    const key = `pt_${randomBytes(24).toString('base64url')}`;
    const record: ApiKeyRecord = {
      id: randomUUID(),
      name: options.name,
      prefix: key.slice(0, 10),
      createdAt: new Date().toISOString(),
      revokedAt: null,
      lastUsedAt: null,
      userId: options.userId ?? null,
      role: options.role,
      expiresAt: options.expiresAt ?? null,
    };
    await this.#db.run(
      'INSERT INTO api_keys (id, name, prefix, hash, created_at, user_id, role, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)',
      [
        record.id,
        record.name,
        record.prefix,
        hashKey(key),
        record.createdAt,
        record.userId,
        record.role,
        record.expiresAt,
      ],
    );
    await new Settings(this.#db).protect('keys');
    return { key, record };
  }

  async list(): Promise<ApiKeyRecord[]> {
    const rows = await this.#db.query<Record<string, unknown>>(
      `SELECT ${FIELDS} FROM api_keys ORDER BY created_at`,
    );
    return rows.map((r) => fromRow(r, COLUMNS));
  }

  /** The active, unexpired key this is, its last use noted; undefined for any other string. */
  async verify(key: string): Promise<ApiKeyRecord | undefined> {
    const now = new Date().toISOString();
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE api_keys SET last_used_at = ? WHERE hash = ? AND revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?)
       RETURNING ${FIELDS}`,
      [now, hashKey(key), now],
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
