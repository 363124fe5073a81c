/**
 * The shared record store: PostgreSQL through node-postgres, for several `pathotype serve`
 * instances on one or many machines. Schema changes are the numbered SQL files of
 * migrations/postgres, applied in order at start-up under an advisory lock (so two servers
 * starting together do not race) and recorded in schema_migrations.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import pg from 'pg';

import { PathotypeError } from '../errors.js';
import { ensureDir } from '../workspace.js';
import {
  hashKey,
  newApiKey,
  PREDICTION_COLUMNS,
  predictionValues,
  removeUnknownFiles,
  type ApiKeyRecord,
  type PredictionRecord,
  type RecordStore,
  type StoredPrediction,
} from './records.js';

const migrationsDir = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../migrations/postgres',
);
/** Any constant: the key of the advisory lock that serialises migrations across servers. */
const MIGRATION_LOCK = 7_345_911;

interface PredictionRow {
  id: string;
  created_at: Date;
  file_name: string;
  sha256: string;
  bytes: number;
  width: number;
  height: number;
  model_id: string;
  model_version: number;
  result: StoredPrediction;
  timings: PredictionRecord['timings'];
  client: PredictionRecord['client'];
  image_file: string | null;
}

interface KeyRow {
  id: string;
  name: string;
  prefix: string;
  created_at: Date;
  revoked_at: Date | null;
  last_used_at: Date | null;
}

const toRecord = (r: PredictionRow): PredictionRecord => ({
  id: r.id,
  createdAt: r.created_at.toISOString(),
  fileName: r.file_name,
  sha256: r.sha256,
  bytes: r.bytes,
  width: r.width,
  height: r.height,
  modelId: r.model_id,
  modelVersion: r.model_version,
  result: r.result,
  timings: r.timings,
  client: r.client,
  imageFile: r.image_file,
});

const toKey = (r: KeyRow): ApiKeyRecord => ({
  id: r.id,
  name: r.name,
  prefix: r.prefix,
  createdAt: r.created_at.toISOString(),
  revokedAt: r.revoked_at?.toISOString() ?? null,
  lastUsedAt: r.last_used_at?.toISOString() ?? null,
});

export class PgRecords implements RecordStore {
  readonly uploadsDir: string;
  readonly #pool: pg.Pool;

  private constructor(pool: pg.Pool, uploadsDir: string) {
    this.#pool = pool;
    this.uploadsDir = uploadsDir;
  }

  static async open(url: string, uploadsDir: string): Promise<PgRecords> {
    const pool = new pg.Pool({ connectionString: url, max: 8, connectionTimeoutMillis: 10_000 });
    // An idle client's error (the server restarting) must not end the process: the pool replaces it.
    pool.on('error', () => undefined);
    try {
      await migrate(pool);
    } catch (cause) {
      await pool.end();
      throw new PathotypeError('ERR_DATABASE', `cannot use the database: ${(cause as Error).message}`, {
        cause,
      });
    }
    return new PgRecords(pool, ensureDir(uploadsDir));
  }

  newId(): string {
    return randomUUID();
  }

  async insert(record: PredictionRecord): Promise<void> {
    await this.#pool.query(
      `INSERT INTO predictions (${PREDICTION_COLUMNS.join(', ')}) VALUES (${PREDICTION_COLUMNS.map((_, i) => `$${i + 1}`).join(',')})`,
      predictionValues(record),
    );
  }

  async get(id: string): Promise<PredictionRecord | undefined> {
    const { rows } = await this.#pool.query<PredictionRow>('SELECT * FROM predictions WHERE id = $1', [id]);
    return rows[0] ? toRecord(rows[0]) : undefined;
  }

  async list(options: {
    limit: number;
    offset: number;
    query?: string;
  }): Promise<{ total: number; items: PredictionRecord[] }> {
    const pattern = options.query ? `%${options.query.replace(/[\\%_]/g, (c) => `\\${c}`)}%` : null;
    const where = pattern ? 'WHERE file_name ILIKE $1 OR id ILIKE $1' : '';
    const params = pattern ? [pattern] : [];
    const total = await this.#pool.query<{ n: string }>(
      `SELECT COUNT(*) AS n FROM predictions ${where}`,
      params,
    );
    const { rows } = await this.#pool.query<PredictionRow>(
      `SELECT * FROM predictions ${where} ORDER BY created_at DESC, seq DESC LIMIT $${params.length + 1} OFFSET $${params.length + 2}`,
      [...params, options.limit, options.offset],
    );
    return { total: Number(total.rows[0]?.n ?? 0), items: rows.map(toRecord) };
  }

  imagePath(record: PredictionRecord): string | null {
    if (!record.imageFile) return null;
    const file = path.join(this.uploadsDir, record.imageFile);
    return existsSync(file) ? file : null;
  }

  async removeOrphanUploads(): Promise<number> {
    const { rows } = await this.#pool.query<{ image_file: string }>(
      'SELECT image_file FROM predictions WHERE image_file IS NOT NULL',
    );
    // Another server may be writing an upload right now: only files older than a minute go.
    const known = new Set(rows.map((r) => r.image_file));
    const cutoff = Date.now() - 60_000;
    for (const file of readdirSync(this.uploadsDir)) {
      try {
        if (!known.has(file) && statSync(path.join(this.uploadsDir, file)).mtimeMs > cutoff) known.add(file);
      } catch {
        // gone already
      }
    }
    return removeUnknownFiles(this.uploadsDir, known);
  }

  async createKey(name: string): Promise<{ key: string; record: ApiKeyRecord }> {
    const { key, record, hash } = newApiKey(name);
    await this.#pool.query(
      'INSERT INTO api_keys (id, name, prefix, hash, created_at) VALUES ($1,$2,$3,$4,$5)',
      [record.id, name, record.prefix, hash, record.createdAt],
    );
    return { key, record };
  }

  async keys(): Promise<ApiKeyRecord[]> {
    const { rows } = await this.#pool.query<KeyRow>(
      'SELECT id, name, prefix, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at',
    );
    return rows.map(toKey);
  }

  async keysRequired(): Promise<boolean> {
    const { rows } = await this.#pool.query<{ n: string }>(
      'SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL',
    );
    return Number(rows[0]?.n ?? 0) > 0;
  }

  async verifyKey(key: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.#pool.query<KeyRow>(
      `UPDATE api_keys SET last_used_at = now() WHERE hash = $1 AND revoked_at IS NULL
       RETURNING id, name, prefix, created_at, revoked_at, last_used_at`,
      [hashKey(key)],
    );
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  async revokeKey(idOrPrefix: string): Promise<ApiKeyRecord | undefined> {
    const { rows } = await this.#pool.query<KeyRow>(
      `UPDATE api_keys SET revoked_at = COALESCE(revoked_at, now()) WHERE id = $1 OR prefix = $1
       RETURNING id, name, prefix, created_at, revoked_at, last_used_at`,
      [idOrPrefix],
    );
    return rows[0] ? toKey(rows[0]) : undefined;
  }

  async close(): Promise<void> {
    await this.#pool.end();
  }
}

/** Runs `fn` holding the deployment's schema lock: one server at a time changes the schema. */
export async function withMigrationLock<T>(
  pool: pg.Pool,
  fn: (client: pg.PoolClient) => Promise<T>,
): Promise<T> {
  const client = await pool.connect();
  try {
    await client.query('SELECT pg_advisory_lock($1)', [MIGRATION_LOCK]);
    return await fn(client);
  } finally {
    await client.query('SELECT pg_advisory_unlock($1)', [MIGRATION_LOCK]).catch(() => undefined);
    client.release();
  }
}

/** Applies the migrations not yet recorded, each in its own transaction, under the lock. */
export async function migrate(pool: pg.Pool): Promise<void> {
  await withMigrationLock(pool, async (client) => {
    await client.query(
      'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL DEFAULT now())',
    );
    const done = new Set(
      (await client.query<{ version: number }>('SELECT version FROM schema_migrations')).rows.map(
        (r) => r.version,
      ),
    );
    for (const file of readdirSync(migrationsDir)
      .filter((f) => /^\d+_.+\.sql$/.test(f))
      .sort()) {
      const version = Number(file.split('_')[0]);
      if (done.has(version)) continue;
      await client.query('BEGIN');
      try {
        await client.query(readFileSync(path.join(migrationsDir, file), 'utf8'));
        await client.query('INSERT INTO schema_migrations (version, name) VALUES ($1, $2)', [version, file]);
        await client.query('COMMIT');
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      }
    }
  });
}
