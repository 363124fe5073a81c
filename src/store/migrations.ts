/**
 * The server's schema as numbered migrations, written once for both dialects: column types are
 * the neutral words below, translated for SQLite or PostgreSQL. Applied in order at start-up,
 * each in its own transaction, and recorded in schema_migrations (a PostgreSQL deployment
 * applies them under an advisory lock, so servers starting together do not race). Migrations are
 * history: a change of schema is a new one, never an edit of an old one.
 */
import type { Dialect } from './database.js';

/** Neutral type words and what each dialect calls them. */
const TYPES: Record<string, Record<Dialect, string>> = {
  TIME: { sqlite: 'TEXT', postgres: 'TIMESTAMPTZ' },
  JSON: { sqlite: 'TEXT', postgres: 'JSONB' },
  FLAG: { sqlite: 'INTEGER', postgres: 'BOOLEAN' },
  REAL: { sqlite: 'REAL', postgres: 'DOUBLE PRECISION' },
};

/** PostgreSQL keeps the insertion order in a `seq` column; SQLite has its rowid. */
const SEQ_COLUMN = /,\s*seq SERIAL/g;

export function translate(sql: string, dialect: Dialect): string {
  let out = sql.replace(SEQ_COLUMN, dialect === 'postgres' ? ',\n  seq BIGSERIAL NOT NULL' : '');
  for (const [word, names] of Object.entries(TYPES))
    out = out.replace(new RegExp(`\\b${word}\\b`, 'g'), names[dialect]);
  return out;
}

/** Triggers by which the database itself refuses to change or remove a row of `table`. */
function appendOnly(table: string, message: string): Record<Dialect, string> {
  return {
    sqlite: `
CREATE TRIGGER IF NOT EXISTS ${table}_no_update BEFORE UPDATE ON ${table} BEGIN SELECT RAISE(ABORT, '${message}'); END;
CREATE TRIGGER IF NOT EXISTS ${table}_no_delete BEFORE DELETE ON ${table} BEGIN SELECT RAISE(ABORT, '${message}'); END;`,
    postgres: `
CREATE OR REPLACE FUNCTION ${table}_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION '${message}'; END; $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS ${table}_no_change ON ${table};
CREATE TRIGGER ${table}_no_change BEFORE UPDATE OR DELETE ON ${table} FOR EACH ROW EXECUTE FUNCTION ${table}_append_only();`,
  };
}

export interface Migration {
  version: number;
  name: string;
  /** Statements in neutral types; `columns` adds columns that older files may lack. */
  sql?: string;
  columns?: { table: string; column: string; definition: string }[];
  /** Statements only one dialect needs (triggers are written differently). */
  dialectSql?: Partial<Record<Dialect, string>>;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: '001_records',
    sql: `
CREATE TABLE IF NOT EXISTS predictions (
  id TEXT PRIMARY KEY,
  created_at TIME NOT NULL,
  file_name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  model_version INTEGER NOT NULL,
  result JSON NOT NULL,
  timings JSON NOT NULL,
  client JSON NOT NULL,
  image_file TEXT,
  seq SERIAL
);
CREATE INDEX IF NOT EXISTS predictions_created ON predictions (created_at);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TIME NOT NULL,
  revoked_at TIME,
  last_used_at TIME
);`,
  },
  {
    version: 2,
    name: '002_slide_jobs',
    sql: `
CREATE TABLE IF NOT EXISTS slide_jobs (
  id TEXT PRIMARY KEY,
  created_at TIME NOT NULL,
  updated_at TIME NOT NULL,
  status TEXT NOT NULL,
  file_name TEXT NOT NULL,
  slide_path TEXT NOT NULL,
  uploaded FLAG NOT NULL,
  slide_mpp REAL,
  done INTEGER NOT NULL DEFAULT 0,
  total INTEGER NOT NULL DEFAULT 0,
  error JSON,
  summary JSON,
  model_id TEXT NOT NULL,
  worker TEXT,
  attempts INTEGER NOT NULL DEFAULT 0,
  seq SERIAL
);
CREATE INDEX IF NOT EXISTS slide_jobs_created ON slide_jobs (created_at);`,
  },
  {
    // SQLite files written before the schema was numbered have slide jobs without these.
    version: 3,
    name: '003_slide_job_workers',
    columns: [
      { table: 'slide_jobs', column: 'worker', definition: 'TEXT' },
      { table: 'slide_jobs', column: 'attempts', definition: 'INTEGER NOT NULL DEFAULT 0' },
    ],
  },
  {
    version: 4,
    name: '004_access',
    sql: `
CREATE TABLE IF NOT EXISTS users (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL UNIQUE,
  role TEXT NOT NULL,
  password_hash TEXT NOT NULL,
  created_at TIME NOT NULL,
  password_changed_at TIME NOT NULL,
  disabled_at TIME,
  failed_logins INTEGER NOT NULL DEFAULT 0,
  locked_until TIME
);
CREATE TABLE IF NOT EXISTS sessions (
  id TEXT PRIMARY KEY,
  data JSON NOT NULL,
  expires_at TIME NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
  name TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS rate_limits (
  key TEXT PRIMARY KEY,
  hits INTEGER NOT NULL,
  reset_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS audit (
  id TEXT PRIMARY KEY,
  at TIME NOT NULL,
  actor TEXT NOT NULL,
  actor_kind TEXT NOT NULL,
  action TEXT NOT NULL,
  case_id TEXT,
  target TEXT NOT NULL,
  status INTEGER NOT NULL,
  address TEXT NOT NULL,
  user_agent TEXT NOT NULL,
  seq SERIAL
);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
CREATE INDEX IF NOT EXISTS audit_case ON audit (case_id);
INSERT INTO settings (name, value) SELECT 'protected', 'keys' WHERE EXISTS (SELECT 1 FROM api_keys WHERE revoked_at IS NULL);`,
    columns: [
      { table: 'api_keys', column: 'user_id', definition: 'TEXT' },
      { table: 'api_keys', column: 'role', definition: 'TEXT' },
      { table: 'api_keys', column: 'expires_at', definition: 'TIME' },
    ],
    // The audit is append-only: the database itself refuses to change or remove a row.
    dialectSql: {
      sqlite: `
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit is append-only'); END;`,
      postgres: `
CREATE OR REPLACE FUNCTION audit_append_only() RETURNS trigger AS $$
BEGIN RAISE EXCEPTION 'the audit is append-only'; END; $$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS audit_no_change ON audit;
CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit FOR EACH ROW EXECUTE FUNCTION audit_append_only();`,
    },
  },
  {
    version: 5,
    name: '005_slide_job_bounds',
    columns: [
      // Who submitted it (a user's or key's id): a queue bound per client, cancelling by its owner.
      { table: 'slide_jobs', column: 'owner', definition: 'TEXT' },
      // Tiles of the model's grid over the slide: the queue runs small jobs first.
      { table: 'slide_jobs', column: 'work', definition: 'INTEGER NOT NULL DEFAULT 0' },
    ],
  },
  {
    version: 6,
    name: '006_reviews',
    sql: `
CREATE TABLE IF NOT EXISTS reviews (
  id TEXT PRIMARY KEY,
  created_at TIME NOT NULL,
  case_kind TEXT NOT NULL,
  case_id TEXT NOT NULL,
  reviewer TEXT NOT NULL,
  reviewer_id TEXT,
  label TEXT NOT NULL,
  other_text TEXT,
  patient TEXT,
  comment TEXT NOT NULL,
  model_id TEXT NOT NULL,
  predicted TEXT,
  supersedes TEXT,
  seq SERIAL
);
CREATE INDEX IF NOT EXISTS reviews_case ON reviews (case_kind, case_id);
CREATE INDEX IF NOT EXISTS reviews_created ON reviews (created_at);`,
    // Reviews are a clinical record: a new opinion supersedes, nothing is edited or removed.
    dialectSql: appendOnly('reviews', 'reviews are append-only'),
  },
  {
    // Failed sign-ins per name typed (a keyed hash) and address; '' counts every address.
    version: 7,
    name: '007_sign_in_failures',
    sql: `
CREATE TABLE IF NOT EXISTS sign_in_failures (
  name_key TEXT NOT NULL,
  address TEXT NOT NULL,
  failures INTEGER NOT NULL,
  last_at REAL NOT NULL,
  PRIMARY KEY (name_key, address)
);
CREATE INDEX IF NOT EXISTS sign_in_failures_last ON sign_in_failures (last_at);`,
  },
  {
    // The audit's hash chain: each row's place and its hash over its content and the previous
    // row's hash (store/audit.ts). Rows written before it have neither.
    version: 8,
    name: '008_audit_chain',
    columns: [
      { table: 'audit', column: 'chain_seq', definition: 'INTEGER' },
      { table: 'audit', column: 'hash', definition: 'TEXT' },
    ],
    dialectSql: {
      sqlite: 'CREATE UNIQUE INDEX IF NOT EXISTS audit_chain ON audit (chain_seq);',
      postgres: 'CREATE UNIQUE INDEX IF NOT EXISTS audit_chain ON audit (chain_seq);',
    },
  },
  {
    version: 9,
    name: '009_review_loop',
    sql: `
CREATE TABLE IF NOT EXISTS case_signals (
  case_kind TEXT NOT NULL,
  case_id TEXT NOT NULL,
  created_at TIME NOT NULL,
  model_id TEXT NOT NULL,
  margin REAL,
  atypicality REAL,
  inputs JSON,
  PRIMARY KEY (case_kind, case_id)
);
CREATE INDEX IF NOT EXISTS case_signals_created ON case_signals (created_at);
CREATE TABLE IF NOT EXISTS model_promotions (
  id TEXT PRIMARY KEY,
  at TIME NOT NULL,
  name TEXT NOT NULL,
  model_id TEXT NOT NULL,
  previous TEXT,
  actor TEXT NOT NULL,
  comparison_id TEXT,
  seq SERIAL
);
CREATE INDEX IF NOT EXISTS model_promotions_name ON model_promotions (name, at);
CREATE TABLE IF NOT EXISTS model_comparisons (
  id TEXT PRIMARY KEY,
  created_at TIME NOT NULL,
  name TEXT NOT NULL,
  champion TEXT NOT NULL,
  challenger TEXT NOT NULL,
  actor TEXT NOT NULL,
  result JSON NOT NULL,
  seq SERIAL
);
CREATE TABLE IF NOT EXISTS case_answers (
  case_kind TEXT NOT NULL,
  case_id TEXT NOT NULL,
  model_id TEXT NOT NULL,
  created_at TIME NOT NULL,
  answer JSON NOT NULL,
  PRIMARY KEY (case_kind, case_id, model_id)
);`,
    // Which version answered is history: a promotion (or a rollback) is a new row, never an edit.
    dialectSql: appendOnly('model_promotions', 'promotions are append-only'),
  },
];

/** What a database must offer to be migrated: statements in one transaction, and its columns. */
export interface MigrationTarget {
  readonly dialect: Dialect;
  appliedVersions(): Promise<Set<number>>;
  columnsOf(table: string): Promise<Set<string>>;
  /** Runs the statements and records the version, all or nothing. */
  apply(migration: Migration, statements: string[]): Promise<void>;
}

export async function migrate(target: MigrationTarget): Promise<void> {
  const done = await target.appliedVersions();
  for (const migration of MIGRATIONS) {
    if (done.has(migration.version)) continue;
    const statements = migration.sql ? [translate(migration.sql, target.dialect)] : [];
    for (const { table, column, definition } of migration.columns ?? []) {
      if (!(await target.columnsOf(table)).has(column))
        statements.push(`ALTER TABLE ${table} ADD COLUMN ${column} ${translate(definition, target.dialect)}`);
    }
    const own = migration.dialectSql?.[target.dialect];
    if (own) statements.push(own);
    await target.apply(migration, statements);
  }
}

export const MIGRATIONS_TABLE =
  'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)';
