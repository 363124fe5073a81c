/**
 * The embedded database: one SQLite file in WAL mode (readers never wait for the writer), one
 * handle for every store of the server. better-sqlite3 is synchronous; each call is one short
 * statement, so the event loop waits microseconds.
 */
import path from 'node:path';

import BetterSqlite3 from 'better-sqlite3';

import { ensureDir } from '../workspace.js';
import type { Database, SqlValue } from './database.js';
import { migrate, MIGRATIONS_TABLE, type Migration } from './migrations.js';

export class SqliteDatabase implements Database {
  readonly dialect = 'sqlite';
  readonly insertOrder = 'rowid';
  readonly like = 'LIKE';
  readonly #db: BetterSqlite3.Database;

  private constructor(file: string) {
    ensureDir(path.dirname(file));
    this.#db = new BetterSqlite3(file);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('busy_timeout = 5000');
  }

  /** Opens (or creates) the file and brings its schema up to date. */
  static async open(file: string): Promise<SqliteDatabase> {
    const db = new SqliteDatabase(file);
    try {
      await db.#migrate();
    } catch (error) {
      db.#db.close();
      throw error;
    }
    return db;
  }

  // async, so that a failing statement rejects like PostgreSQL's rather than throwing at the call.
  // eslint-disable-next-line @typescript-eslint/require-await
  async query<T>(sql: string, params: readonly SqlValue[] = []): Promise<T[]> {
    return this.#db.prepare(sql).all(...params) as T[];
  }

  // eslint-disable-next-line @typescript-eslint/require-await
  async run(sql: string, params: readonly SqlValue[] = []): Promise<number> {
    return this.#db.prepare(sql).run(...params).changes;
  }

  close(): Promise<void> {
    if (this.#db.open) this.#db.close();
    return Promise.resolve();
  }

  #migrate(): Promise<void> {
    const db = this.#db;
    db.exec(MIGRATIONS_TABLE);
    return migrate({
      dialect: 'sqlite',
      appliedVersions: () =>
        Promise.resolve(
          new Set(
            (db.prepare('SELECT version FROM schema_migrations').all() as { version: number }[]).map(
              (r) => r.version,
            ),
          ),
        ),
      columnsOf: (table) =>
        Promise.resolve(
          new Set((db.pragma(`table_info(${table})`) as { name: string }[]).map((c) => c.name)),
        ),
      apply: (migration: Migration, statements: string[]) => {
        db.transaction(() => {
          for (const sql of statements) db.exec(sql);
          db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
            migration.version,
            migration.name,
            new Date().toISOString(),
          );
        })();
        return Promise.resolve();
      },
    });
  }
}
