/**
 * What the server keeps: every prediction (who asked, what image, which model, the result and
 * its timings) and the API keys, hashed. SQLite in WAL mode; each prediction is one insert in
 * one transaction, after its image file is in place, so a request killed midway leaves a
 * complete record or none.
 */
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';

import Database from 'better-sqlite3';

import { ensureDir } from '../workspace.js';
import type { ImagePrediction } from '../predict/predictor.js';

/** Calibration fields came with package format 1.1: records written before lack them. */
type CalibrationFields = 'status' | 'confidence' | 'probabilities' | 'threshold';
export type StoredPrediction = Omit<ImagePrediction, CalibrationFields> &
  Partial<Pick<ImagePrediction, CalibrationFields>>;

export interface PredictionRecord {
  id: string;
  createdAt: string;
  fileName: string;
  sha256: string;
  bytes: number;
  width: number;
  height: number;
  modelId: string;
  modelVersion: number;
  result: StoredPrediction;
  timings: { totalMs: number; queueMs: number; preprocessMs: number; inferenceMs: number };
  client: { address: string; userAgent: string; keyId: string | null };
  imageFile: string | null;
}

export interface ApiKeyRecord {
  id: string;
  name: string;
  prefix: string;
  createdAt: string;
  revokedAt: string | null;
  lastUsedAt: string | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS predictions (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  file_name TEXT NOT NULL,
  sha256 TEXT NOT NULL,
  bytes INTEGER NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  model_id TEXT NOT NULL,
  model_version INTEGER NOT NULL,
  result TEXT NOT NULL,
  timings TEXT NOT NULL,
  client TEXT NOT NULL,
  image_file TEXT
);
CREATE INDEX IF NOT EXISTS predictions_created ON predictions(created_at);
CREATE TABLE IF NOT EXISTS api_keys (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  prefix TEXT NOT NULL,
  hash TEXT NOT NULL UNIQUE,
  created_at TEXT NOT NULL,
  revoked_at TEXT,
  last_used_at TEXT
);
`;

interface Row {
  id: string;
  created_at: string;
  file_name: string;
  sha256: string;
  bytes: number;
  width: number;
  height: number;
  model_id: string;
  model_version: number;
  result: string;
  timings: string;
  client: string;
  image_file: string | null;
}

function toRecord(row: Row): PredictionRecord {
  return {
    id: row.id,
    createdAt: row.created_at,
    fileName: row.file_name,
    sha256: row.sha256,
    bytes: row.bytes,
    width: row.width,
    height: row.height,
    modelId: row.model_id,
    modelVersion: row.model_version,
    result: JSON.parse(row.result) as StoredPrediction,
    timings: JSON.parse(row.timings) as PredictionRecord['timings'],
    client: JSON.parse(row.client) as PredictionRecord['client'],
    imageFile: row.image_file,
  };
}

/**
 * Where a server keeps its records: SQLite embedded (the default), or PostgreSQL shared by
 * several servers (`serve --database postgres://...`). The same operations, asynchronous.
 */
export interface RecordStore {
  /** Kept upload images, by record (a directory every server of a deployment shares). */
  readonly uploadsDir: string;
  newId(): string;
  insert(record: PredictionRecord): Promise<void>;
  get(id: string): Promise<PredictionRecord | undefined>;
  /** Newest first; `query` matches the file name or the id. */
  list(options: {
    limit: number;
    offset: number;
    query?: string;
  }): Promise<{ total: number; items: PredictionRecord[] }>;
  imagePath(record: PredictionRecord): string | null;
  /** Upload files without a record: left by a process killed between writing and recording. */
  removeOrphanUploads(): Promise<number>;
  createKey(name: string): Promise<{ key: string; record: ApiKeyRecord }>;
  keys(): Promise<ApiKeyRecord[]>;
  /** True when at least one key is active: the REST API then requires one. */
  keysRequired(): Promise<boolean>;
  verifyKey(key: string): Promise<ApiKeyRecord | undefined>;
  revokeKey(idOrPrefix: string): Promise<ApiKeyRecord | undefined>;
  close(): Promise<void>;
}

/** A new API key: shown once, stored only as its SHA-256. */
export function newApiKey(name: string): { key: string; record: ApiKeyRecord; hash: string } {
  const key = `pt_${randomBytes(24).toString('base64url')}`;
  return {
    key,
    hash: hashKey(key),
    record: {
      id: randomUUID(),
      name,
      prefix: key.slice(0, 10),
      createdAt: new Date().toISOString(),
      revokedAt: null,
      lastUsedAt: null,
    },
  };
}

/** Upload files no record names, for removeOrphanUploads. */
export function removeUnknownFiles(dir: string, known: ReadonlySet<string>): number {
  let removed = 0;
  for (const file of readdirSync(dir)) {
    if (!known.has(file)) {
      rmSync(path.join(dir, file), { force: true });
      removed++;
    }
  }
  return removed;
}

/** A prediction's columns and their values in that order, for either store's insert. */
export const PREDICTION_COLUMNS = [
  'id',
  'created_at',
  'file_name',
  'sha256',
  'bytes',
  'width',
  'height',
  'model_id',
  'model_version',
  'result',
  'timings',
  'client',
  'image_file',
] as const;

export function predictionValues(record: PredictionRecord): (string | number | null)[] {
  return [
    record.id,
    record.createdAt,
    record.fileName,
    record.sha256,
    record.bytes,
    record.width,
    record.height,
    record.modelId,
    record.modelVersion,
    JSON.stringify(record.result),
    JSON.stringify(record.timings),
    JSON.stringify(record.client),
    record.imageFile,
  ];
}

export function hashKey(key: string): string {
  return createHash('sha256').update(key).digest('hex');
}

/** The embedded store: one SQLite file in WAL mode. */
export class ServerRecords implements RecordStore {
  readonly db: Database.Database;
  readonly uploadsDir: string;

  constructor(file: string, uploadsDir: string) {
    ensureDir(path.dirname(file));
    this.uploadsDir = ensureDir(uploadsDir);
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(SCHEMA);
  }

  removeOrphanUploads(): Promise<number> {
    const known = new Set(
      (
        this.db.prepare('SELECT image_file FROM predictions WHERE image_file IS NOT NULL').all() as {
          image_file: string;
        }[]
      ).map((r) => r.image_file),
    );
    return Promise.resolve(removeUnknownFiles(this.uploadsDir, known));
  }

  newId(): string {
    return randomUUID();
  }

  insert(record: PredictionRecord): Promise<void> {
    this.db
      .prepare(
        `INSERT INTO predictions (${PREDICTION_COLUMNS.join(', ')}) VALUES (${PREDICTION_COLUMNS.map(() => '?').join(',')})`,
      )
      .run(...predictionValues(record));
    return Promise.resolve();
  }

  get(id: string): Promise<PredictionRecord | undefined> {
    const row = this.db.prepare('SELECT * FROM predictions WHERE id = ?').get(id) as Row | undefined;
    return Promise.resolve(row ? toRecord(row) : undefined);
  }

  imagePath(record: PredictionRecord): string | null {
    if (!record.imageFile) return null;
    const file = path.join(this.uploadsDir, record.imageFile);
    return existsSync(file) ? file : null;
  }

  list(options: { limit: number; offset: number; query?: string }): Promise<{
    total: number;
    items: PredictionRecord[];
  }> {
    const where = options.query ? 'WHERE file_name LIKE @q OR id LIKE @q' : '';
    const params = {
      q: `%${(options.query ?? '').replace(/[%_]/g, (c) => `\\${c}`)}%`,
      limit: options.limit,
      offset: options.offset,
    };
    const escape = options.query ? " ESCAPE '\\'" : '';
    const total = (
      this.db
        .prepare(`SELECT COUNT(*) AS n FROM predictions ${where.replaceAll('@q', `@q${escape}`)}`)
        .get(params) as { n: number }
    ).n;
    const rows = this.db
      .prepare(
        `SELECT * FROM predictions ${where.replaceAll('@q', `@q${escape}`)} ORDER BY created_at DESC, rowid DESC LIMIT @limit OFFSET @offset`,
      )
      .all(params) as Row[];
    return Promise.resolve({ total, items: rows.map(toRecord) });
  }

  // ------------------------------------------------------------ API keys

  createKey(name: string): Promise<{ key: string; record: ApiKeyRecord }> {
    const { key, record, hash } = newApiKey(name);
    this.db
      .prepare('INSERT INTO api_keys (id, name, prefix, hash, created_at) VALUES (?,?,?,?,?)')
      .run(record.id, name, record.prefix, hash, record.createdAt);
    return Promise.resolve({ key, record });
  }

  keys(): Promise<ApiKeyRecord[]> {
    return Promise.resolve(this.#keys());
  }

  #keys(): ApiKeyRecord[] {
    return (
      this.db
        .prepare(
          'SELECT id, name, prefix, created_at, revoked_at, last_used_at FROM api_keys ORDER BY created_at',
        )
        .all() as {
        id: string;
        name: string;
        prefix: string;
        created_at: string;
        revoked_at: string | null;
        last_used_at: string | null;
      }[]
    ).map((r) => ({
      id: r.id,
      name: r.name,
      prefix: r.prefix,
      createdAt: r.created_at,
      revokedAt: r.revoked_at,
      lastUsedAt: r.last_used_at,
    }));
  }

  keysRequired(): Promise<boolean> {
    return Promise.resolve(
      (this.db.prepare('SELECT COUNT(*) AS n FROM api_keys WHERE revoked_at IS NULL').get() as { n: number })
        .n > 0,
    );
  }

  verifyKey(key: string): Promise<ApiKeyRecord | undefined> {
    const row = this.db
      .prepare('SELECT id FROM api_keys WHERE hash = ? AND revoked_at IS NULL')
      .get(hashKey(key)) as { id: string } | undefined;
    if (!row) return Promise.resolve(undefined);
    this.db
      .prepare('UPDATE api_keys SET last_used_at = ? WHERE id = ?')
      .run(new Date().toISOString(), row.id);
    return Promise.resolve(this.#keys().find((k) => k.id === row.id));
  }

  revokeKey(idOrPrefix: string): Promise<ApiKeyRecord | undefined> {
    const match = this.#keys().find((k) => k.id === idOrPrefix || k.prefix === idOrPrefix);
    if (!match || match.revokedAt) return Promise.resolve(match);
    this.db
      .prepare('UPDATE api_keys SET revoked_at = ? WHERE id = ?')
      .run(new Date().toISOString(), match.id);
    return Promise.resolve(this.#keys().find((k) => k.id === match.id));
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }
}
