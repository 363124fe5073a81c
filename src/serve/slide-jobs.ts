/**
 * Slide jobs: whole-slide inference is minutes of work, so `POST /api/v1/slides` answers 202 with
 * a job that runs in the background, one at a time. Jobs live in the server's SQLite file and
 * their results in the job's folder, so a restart loses none: a job that was queued or running
 * when the server stopped runs again when it starts.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import Database from 'better-sqlite3';
import sharp from 'sharp';

import { PathotypeError } from '../errors.js';
import type { Predictor } from '../predict/predictor.js';
import { slideGeoJson, type SlideGeoJson } from '../predict/slide-geojson.js';
import { slideOverlayPng } from '../predict/slide-heatmap.js';
import { predictSlide, type SlidePrediction } from '../predict/slide-predictor.js';
import { DZ_OVERLAP, DZ_TILE_SIZE } from '../slide/deep-zoom.js';
import { ensureDir } from '../workspace.js';

export type SlideJobStatus = 'queued' | 'running' | 'done' | 'failed';

export interface SlideJob {
  id: string;
  createdAt: string;
  updatedAt: string;
  status: SlideJobStatus;
  fileName: string;
  /** Where the slide is: the job's folder for an upload, or under the server's slide root. */
  slidePath: string;
  uploaded: boolean;
  slideMpp: number | null;
  progress: { done: number; total: number };
  error: { code: string; message: string } | null;
  /** When done: the slide-level answer and the tiling, without the tiles. */
  summary: Omit<SlidePrediction, 'tiles'> | null;
  modelId: string;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS slide_jobs (
  id TEXT PRIMARY KEY,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL,
  status TEXT NOT NULL,
  file_name TEXT NOT NULL,
  slide_path TEXT NOT NULL,
  uploaded INTEGER NOT NULL,
  slide_mpp REAL,
  done INTEGER NOT NULL DEFAULT 0,
  total INTEGER NOT NULL DEFAULT 0,
  error TEXT,
  summary TEXT,
  model_id TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS slide_jobs_created ON slide_jobs(created_at);
`;

interface Row {
  id: string;
  created_at: string;
  updated_at: string;
  status: SlideJobStatus;
  file_name: string;
  slide_path: string;
  uploaded: number;
  slide_mpp: number | null;
  done: number;
  total: number;
  error: string | null;
  summary: string | null;
  model_id: string;
}

function toJob(row: Row): SlideJob {
  return {
    id: row.id,
    createdAt: row.created_at,
    updatedAt: row.updated_at,
    status: row.status,
    fileName: row.file_name,
    slidePath: row.slide_path,
    uploaded: row.uploaded === 1,
    slideMpp: row.slide_mpp,
    progress: { done: row.done, total: row.total },
    error: row.error ? (JSON.parse(row.error) as SlideJob['error']) : null,
    summary: row.summary ? (JSON.parse(row.summary) as SlideJob['summary']) : null,
    modelId: row.model_id,
  };
}

export interface NewSlideJob {
  id: string;
  fileName: string;
  slidePath: string;
  uploaded: boolean;
  slideMpp: number | null;
}

/** Slide jobs as the routes see them, whichever store and queue hold them. */
export interface SlideQueue {
  readonly dir: string;
  jobDir(id: string): string;
  /** Jobs a stopped server left behind run again (the embedded queue; a shared one retries by itself). */
  recover(): Promise<number>;
  create(job: NewSlideJob): Promise<SlideJob>;
  get(id: string): Promise<SlideJob | undefined>;
  list(limit: number, offset: number): Promise<{ total: number; items: SlideJob[] }>;
  /** Resolves when this server runs no job. */
  idle(): Promise<void>;
  close(): Promise<void>;
}

export async function findJob(queue: SlideQueue, id: string): Promise<SlideJob> {
  const job = await queue.get(id);
  if (!job) throw new PathotypeError('ERR_NOT_FOUND', `no slide job ${id}`);
  return job;
}

/** The finished job's full prediction (tiles included). */
export async function jobPrediction(queue: SlideQueue, id: string): Promise<SlidePrediction> {
  const job = await findJob(queue, id);
  const file = path.join(queue.jobDir(id), 'prediction.json');
  if (job.status !== 'done' || !existsSync(file))
    throw new PathotypeError('ERR_NOT_READY', `slide job ${id} is ${job.status}, not done`);
  return JSON.parse(readFileSync(file, 'utf8')) as SlidePrediction;
}

export async function jobGeoJson(queue: SlideQueue, id: string): Promise<SlideGeoJson> {
  return slideGeoJson(await jobPrediction(queue, id));
}

/**
 * Runs one job and writes its results into `dir`: the prediction, the overlay as PNG and as a
 * Deep Zoom pyramid. Returns the summary a job record keeps (the prediction without its tiles).
 */
export async function executeSlideJob(
  predictor: Predictor,
  job: Pick<SlideJob, 'slidePath' | 'slideMpp'>,
  dir: string,
  signal: AbortSignal,
  onProgress: (done: number, total: number) => void,
): Promise<string> {
  let last = 0;
  const prediction = await predictSlide(predictor, job.slidePath, {
    ...(job.slideMpp ? { slideMpp: job.slideMpp } : {}),
    signal,
    onProgress: (done, total) => {
      // A progress write every few hundred tiles is plenty for a polling client.
      if (done === total || done - last >= 256) {
        last = done;
        onProgress(done, total);
      }
    },
  });
  ensureDir(dir);
  await writeFile(path.join(dir, 'prediction.json.tmp'), JSON.stringify(prediction));
  await rename(path.join(dir, 'prediction.json.tmp'), path.join(dir, 'prediction.json'));
  const overlay = await slideOverlayPng(prediction);
  await writeFile(path.join(dir, 'heatmap.png'), overlay.png);
  rmSync(path.join(dir, 'heatmap_files'), { recursive: true, force: true });
  // At the overlay's own resolution: a viewer stretches it over the slide's width.
  await sharp(overlay.png)
    .png()
    .tile({ size: DZ_TILE_SIZE, overlap: DZ_OVERLAP, layout: 'dz' })
    .toFile(path.join(dir, 'heatmap'));
  const summary: Omit<SlidePrediction, 'tiles'> & { tiles?: unknown } = { ...prediction };
  delete summary.tiles;
  return JSON.stringify(summary);
}

/** The failure a job record keeps. */
export function jobError(error: unknown): string {
  const code = error instanceof PathotypeError ? error.code : 'ERR_INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return JSON.stringify({ code, message });
}

/** The embedded queue: jobs in the server's SQLite file, run one at a time by this server. */
export class SlideJobs implements SlideQueue {
  readonly #db: Database.Database;
  readonly dir: string;
  readonly #predictor: Predictor;
  readonly #modelId: string;
  #running: Promise<void> | null = null;
  #closed = false;
  readonly #abort = new AbortController();

  /** `file`: the server's SQLite file (jobs stay on this machine's disk, beside its slides). */
  constructor(file: string, dir: string, predictor: Predictor, modelId: string) {
    ensureDir(path.dirname(file));
    const db = new Database(file);
    db.pragma('journal_mode = WAL');
    db.pragma('busy_timeout = 5000');
    this.#db = db;
    this.dir = ensureDir(dir);
    this.#predictor = predictor;
    this.#modelId = modelId;
    db.exec(SCHEMA);
  }

  jobDir(id: string): string {
    return path.join(this.dir, id);
  }

  /** Jobs a stopped server left queued or running go back in the queue, oldest first. */
  recover(): Promise<number> {
    const now = new Date().toISOString();
    const { changes } = this.#db
      .prepare(
        "UPDATE slide_jobs SET status = 'queued', updated_at = ? WHERE status IN ('queued', 'running')",
      )
      .run(now);
    this.#kick();
    return Promise.resolve(changes);
  }

  create(job: NewSlideJob): Promise<SlideJob> {
    const now = new Date().toISOString();
    this.#db
      .prepare(
        `INSERT INTO slide_jobs (id, created_at, updated_at, status, file_name, slide_path, uploaded, slide_mpp, model_id)
         VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)`,
      )
      .run(job.id, now, now, job.fileName, job.slidePath, job.uploaded ? 1 : 0, job.slideMpp, this.#modelId);
    this.#kick();
    return this.get(job.id) as Promise<SlideJob>;
  }

  get(id: string): Promise<SlideJob | undefined> {
    const row = this.#db.prepare('SELECT * FROM slide_jobs WHERE id = ?').get(id) as Row | undefined;
    return Promise.resolve(row ? toJob(row) : undefined);
  }

  list(limit: number, offset: number): Promise<{ total: number; items: SlideJob[] }> {
    const total = (this.#db.prepare('SELECT COUNT(*) AS n FROM slide_jobs').get() as { n: number }).n;
    const rows = this.#db
      .prepare('SELECT * FROM slide_jobs ORDER BY created_at DESC, rowid DESC LIMIT ? OFFSET ?')
      .all(limit, offset) as Row[];
    return Promise.resolve({ total, items: rows.map(toJob) });
  }

  /** Resolves when no job is running or waiting (for tests and shutdown). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops the running job between regions; it stays queued and runs again at the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#abort.abort();
    await this.idle();
    this.#db.close();
  }

  #next(): SlideJob | undefined {
    const row = this.#db
      .prepare("SELECT * FROM slide_jobs WHERE status = 'queued' ORDER BY created_at, rowid LIMIT 1")
      .get() as Row | undefined;
    return row ? toJob(row) : undefined;
  }

  #update(id: string, fields: Partial<Pick<Row, 'status' | 'done' | 'total' | 'error' | 'summary'>>): void {
    const keys = Object.keys(fields);
    this.#db
      .prepare(
        `UPDATE slide_jobs SET ${keys.map((k) => `${k} = @${k}`).join(', ')}, updated_at = @now WHERE id = @id`,
      )
      .run({ ...fields, id, now: new Date().toISOString() });
  }

  #kick(): void {
    if (this.#running || this.#closed) return;
    this.#running = (async () => {
      for (let job = this.#next(); job && !this.#closed; job = this.#next()) await this.#run(job);
    })().finally(() => {
      this.#running = null;
    });
  }

  async #run(job: SlideJob): Promise<void> {
    this.#update(job.id, { status: 'running', done: 0, total: 0 });
    try {
      const summary = await executeSlideJob(
        this.#predictor,
        job,
        this.jobDir(job.id),
        this.#abort.signal,
        (done, total) => this.#update(job.id, { done, total }),
      );
      this.#update(job.id, { status: 'done', summary });
    } catch (error) {
      if (this.#abort.signal.aborted) {
        this.#update(job.id, { status: 'queued' });
        return;
      }
      this.#update(job.id, { status: 'failed', error: jobError(error) });
    }
  }
}
