/**
 * The shared database: PostgreSQL through one node-postgres pool per server, used by every
 * store and by pg-boss (the slide queue), for several `pathotype serve` instances on one or many
 * machines. The schema is migrated once, under an advisory lock.
 */
import pg from 'pg';

import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import type { Database, SqlValue } from './database.js';
import { migrate, MIGRATIONS_TABLE, type Migration } from './migrations.js';

/** Any constant: the key of the advisory lock that serialises schema changes across servers. */
const SCHEMA_LOCK = 7_345_911;

/** `?` placeholders as PostgreSQL's `$1, $2, ...` (no statement here has a literal `?`). */
function numbered(sql: string): string {
  let n = 0;
  return sql.replace(/\?/g, () => `$${++n}`);
}

/** Timestamps and flags come back as ISO strings and 0/1, as SQLite gives them. */
function plain(row: Record<string, unknown>): Record<string, unknown> {
  for (const [k, v] of Object.entries(row)) {
    if (v instanceof Date) row[k] = v.toISOString();
    else if (typeof v === 'boolean') row[k] = v ? 1 : 0;
  }
  return row;
}

export class PostgresDatabase implements Database {
  readonly dialect = 'postgres';
  readonly insertOrder = 'seq';
  readonly like = 'ILIKE';
  readonly pool: pg.Pool;

  private constructor(pool: pg.Pool) {
    this.pool = pool;
  }

  static async open(url: string): Promise<PostgresDatabase> {
    const pool = new pg.Pool({
      connectionString: url,
      max: LIMITS.databaseConnections,
      connectionTimeoutMillis: 10_000,
    });
    // An idle client's error (the server restarting) must not end the process: the pool replaces it.
    pool.on('error', () => undefined);
    const db = new PostgresDatabase(pool);
    try {
      await db.withSchemaLock(() => db.#migrate());
    } catch (cause) {
      await pool.end();
      throw new PathotypeError('ERR_DATABASE', `cannot use the database: ${(cause as Error).message}`, {
        cause,
      });
    }
    return db;
  }

  async query<T>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    const { rows } = await this.pool.query(numbered(sql), [...params]);
    return rows.map((r) => plain(r as Record<string, unknown>)) as T[];
  }

  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    return (await this.pool.query(numbered(sql), [...params])).rowCount ?? 0;
  }

  /** Runs `fn` holding the deployment's schema lock: one server at a time changes the schema. */
  async withSchemaLock<T>(fn: () => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    try {
      await client.query('SELECT pg_advisory_lock($1)', [SCHEMA_LOCK]);
      return await fn();
    } finally {
      await client.query('SELECT pg_advisory_unlock($1)', [SCHEMA_LOCK]).catch(() => undefined);
      client.release();
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }

  async #migrate(): Promise<void> {
    await this.pool.query(MIGRATIONS_TABLE);
    await migrate({
      dialect: 'postgres',
      appliedVersions: async () =>
        new Set(
          (await this.query<{ version: number }>('SELECT version FROM schema_migrations')).map(
            (r) => r.version,
          ),
        ),
      columnsOf: async (table) =>
        new Set(
          (
            await this.query<{ column_name: string }>(
              'SELECT column_name FROM information_schema.columns WHERE table_name = ?',
              [table],
            )
          ).map((r) => r.column_name),
        ),
      apply: async (migration: Migration, statements: string[]) => {
        const client = await this.pool.connect();
        try {
          await client.query('BEGIN');
          for (const sql of statements) await client.query(sql);
          await client.query(
            'INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)',
            [migration.version, migration.name, new Date().toISOString()],
          );
          await client.query('COMMIT');
        } catch (error) {
          await client.query('ROLLBACK').catch(() => undefined);
          throw error;
        } finally {
          client.release();
        }
      },
    });
  }
}
