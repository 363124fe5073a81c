/**
 * Every prediction a server made: who asked, what image, which model, the verdict and its
 * timings. Each is one insert, after its image file is in place, so a request killed midway
 * leaves a complete record or none.
 */
import { randomUUID } from 'node:crypto';
import { existsSync, readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

import { LIMITS } from '../limits.js';
import type { ImagePrediction } from '../predict/predictor.js';
import { ensureDir } from '../workspace.js';
import { containsPattern, type Database } from './database.js';
import { columnNames, fromRow, insertSql, toValues, type Columns } from './rows.js';

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
  result: ImagePrediction;
  timings: { totalMs: number; queueMs: number; preprocessMs: number; inferenceMs: number };
  /** Who asked: address and browser, the key's id when a key did, and the user or key by name. */
  client: { address: string; userAgent: string; keyId: string | null; user?: string };
  imageFile: string | null;
}

const COLUMNS: Columns<PredictionRecord> = {
  id: ['id', 'text'],
  createdAt: ['created_at', 'text'],
  fileName: ['file_name', 'text'],
  sha256: ['sha256', 'text'],
  bytes: ['bytes', 'number'],
  width: ['width', 'number'],
  height: ['height', 'number'],
  modelId: ['model_id', 'text'],
  modelVersion: ['model_version', 'number'],
  result: ['result', 'json'],
  timings: ['timings', 'json'],
  client: ['client', 'json'],
  imageFile: ['image_file', 'text'],
};
const SELECT = `SELECT ${columnNames(COLUMNS).join(', ')} FROM predictions`;

/** Records made before calibration (package format 1.1) were all answers, judged by mean probability. */
function withVerdictDefaults(stored: ImagePrediction): ImagePrediction {
  const partial: Partial<ImagePrediction> = stored;
  const means = partial.meanProbabilities ?? {};
  return {
    ...stored,
    status: partial.status ?? 'answered',
    confidence: partial.confidence ?? means[partial.predicted ?? ''] ?? 0,
    probabilities: partial.probabilities ?? means,
    threshold: partial.threshold ?? null,
  };
}

function toRecord(row: Record<string, unknown>): PredictionRecord {
  const record = fromRow(row, COLUMNS);
  return { ...record, result: withVerdictDefaults(record.result) };
}

export class PredictionStore {
  readonly #db: Database;
  /** Kept upload images, by record (a directory every server of a deployment shares). */
  readonly uploadsDir: string;

  constructor(db: Database, uploadsDir: string) {
    this.#db = db;
    this.uploadsDir = ensureDir(uploadsDir);
  }

  newId(): string {
    return randomUUID();
  }

  async insert(record: PredictionRecord): Promise<void> {
    await this.#db.run(insertSql('predictions', COLUMNS), toValues(record, COLUMNS));
  }

  async get(id: string): Promise<PredictionRecord | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(`${SELECT} WHERE id = ?`, [id]);
    return row ? toRecord(row) : undefined;
  }

  /** Newest first; `query` matches the file name or the id, % and _ taken literally. */
  async list(options: {
    limit: number;
    offset: number;
    query?: string;
  }): Promise<{ total: number; items: PredictionRecord[] }> {
    const { like, insertOrder } = this.#db;
    const where = options.query ? `WHERE file_name ${like} ? ESCAPE '\\' OR id ${like} ? ESCAPE '\\'` : '';
    const params = options.query ? [containsPattern(options.query), containsPattern(options.query)] : [];
    const [count] = await this.#db.query<{ n: number | string }>(
      `SELECT COUNT(*) AS n FROM predictions ${where}`,
      params,
    );
    const rows = await this.#db.query<Record<string, unknown>>(
      `${SELECT} ${where} ORDER BY created_at DESC, ${insertOrder} DESC LIMIT ? OFFSET ?`,
      [...params, options.limit, options.offset],
    );
    return { total: Number(count?.n ?? 0), items: rows.map(toRecord) };
  }

  imagePath(record: PredictionRecord): string | null {
    if (!record.imageFile) return null;
    const file = path.join(this.uploadsDir, record.imageFile);
    return existsSync(file) ? file : null;
  }

  /**
   * Upload files without a record: left by a process killed between writing and recording. On a
   * shared database another server may be writing one right now, so only files older than a
   * minute go there; an upload still arriving (`.part`) may take as long as a request may.
   */
  async removeOrphanUploads(): Promise<number> {
    const rows = await this.#db.query<{ image_file: string }>(
      'SELECT image_file FROM predictions WHERE image_file IS NOT NULL',
    );
    const known = new Set(rows.map((r) => r.image_file));
    const now = Date.now();
    const cutoff = this.#db.dialect === 'postgres' ? now - 60_000 : Infinity;
    let removed = 0;
    for (const file of readdirSync(this.uploadsDir)) {
      const full = path.join(this.uploadsDir, file);
      try {
        const age = file.endsWith('.part') ? now - LIMITS.requestTimeoutMs : cutoff;
        if (known.has(file) || statSync(full).mtimeMs > age) continue;
        rmSync(full, { force: true });
        removed++;
      } catch {
        // gone already
      }
    }
    return removed;
  }
}
