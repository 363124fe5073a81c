/**
 * Slide jobs: whole-slide inference is minutes of work, so a submission answers at once with a
 * job that runs in the background. Jobs are rows (this module) beside a queue that hands them
 * to a runner: the embedded queue here, run one at a time by this server, or the shared one of
 * a PostgreSQL deployment (`shared-slide-queue.ts`). What running a job means, the queue is
 * told: the prediction layer's executor. Results live in the job's folder.
 */
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import type { SlidePrediction } from '../predict/slide-predictor.js';
import { ensureDir } from '../workspace.js';
import type { Database, SqlValue } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';

export type SlideJobStatus = 'queued' | 'running' | 'done' | 'failed';

/** The slide-level answer and the tiling, without the tiles: what a job record keeps. */
export type SlideSummary = Omit<SlidePrediction, 'tiles'>;

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
  summary: SlideSummary | null;
  modelId: string;
  /** Which server took it last, and how often it was taken (more than once after a restart). */
  worker: string | null;
  attempts: number;
}

export type NewSlideJob = Pick<SlideJob, 'id' | 'fileName' | 'slidePath' | 'uploaded' | 'slideMpp'>;

/** Runs one job, writing its results into `dir`; the summary goes into the job's record. */
export type SlideExecutor = (
  job: SlideJob,
  dir: string,
  signal: AbortSignal,
  onProgress: (done: number, total: number) => void,
) => Promise<SlideSummary>;

type StoredJob = Omit<SlideJob, 'progress'> & { done: number; total: number };
const COLUMNS: Columns<StoredJob> = {
  id: ['id', 'text'],
  createdAt: ['created_at', 'text'],
  updatedAt: ['updated_at', 'text'],
  status: ['status', 'text'],
  fileName: ['file_name', 'text'],
  slidePath: ['slide_path', 'text'],
  uploaded: ['uploaded', 'flag'],
  slideMpp: ['slide_mpp', 'number'],
  done: ['done', 'number'],
  total: ['total', 'number'],
  error: ['error', 'json'],
  summary: ['summary', 'json'],
  modelId: ['model_id', 'text'],
  worker: ['worker', 'text'],
  attempts: ['attempts', 'number'],
};
const SELECT = `SELECT ${columnNames(COLUMNS).join(', ')} FROM slide_jobs`;

function toJob(row: Record<string, unknown>): SlideJob {
  const { done, total, ...job } = fromRow(row, COLUMNS);
  return { ...job, progress: { done, total } };
}

/** The failure a job record keeps. */
export function jobError(error: unknown): SlideJob['error'] {
  const code = error instanceof PathotypeError ? error.code : 'ERR_INTERNAL';
  const message = error instanceof Error ? error.message : String(error);
  return { code, message };
}

/** The rows of slide_jobs. */
export class SlideJobTable {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async insert(job: NewSlideJob, modelId: string): Promise<void> {
    const now = new Date().toISOString();
    await this.#db.run(
      `INSERT INTO slide_jobs (id, created_at, updated_at, status, file_name, slide_path, uploaded, slide_mpp, model_id)
       VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?)`,
      [job.id, now, now, job.fileName, job.slidePath, job.uploaded ? 1 : 0, job.slideMpp, modelId],
    );
  }

  async get(id: string): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(`${SELECT} WHERE id = ?`, [id]);
    return row ? toJob(row) : undefined;
  }

  async list(limit: number, offset: number): Promise<{ total: number; items: SlideJob[] }> {
    const [count] = await this.#db.query<{ n: number | string }>('SELECT COUNT(*) AS n FROM slide_jobs');
    const rows = await this.#db.query<Record<string, unknown>>(
      `${SELECT} ORDER BY created_at DESC, ${this.#db.insertOrder} DESC LIMIT ? OFFSET ?`,
      [limit, offset],
    );
    return { total: Number(count?.n ?? 0), items: rows.map(toJob) };
  }

  /** The oldest queued job. */
  async next(): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `${SELECT} WHERE status = 'queued' ORDER BY created_at, ${this.#db.insertOrder} LIMIT 1`,
    );
    return row ? toJob(row) : undefined;
  }

  /** Marks the job taken by `worker`; undefined when it is gone. */
  async take(id: string, worker: string): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE slide_jobs SET status = 'running', worker = ?, attempts = attempts + 1, done = 0, total = 0, updated_at = ?
       WHERE id = ? RETURNING ${columnNames(COLUMNS).join(', ')}`,
      [worker, new Date().toISOString(), id],
    );
    return row ? toJob(row) : undefined;
  }

  async update(
    id: string,
    fields: Partial<Pick<SlideJob, 'status' | 'error' | 'summary'> & { done: number; total: number }>,
  ): Promise<void> {
    const keys = Object.keys(fields) as (keyof typeof fields)[];
    const values = keys.map((k): SqlValue => {
      const v = fields[k];
      return typeof v === 'object' && v !== null ? JSON.stringify(v) : (v ?? null);
    });
    await this.#db.run(
      `UPDATE slide_jobs SET ${keys.map((k) => `${k} = ?`).join(', ')}, updated_at = ? WHERE id = ?`,
      [...values, new Date().toISOString(), id],
    );
  }

  /** Jobs a stopped server left queued or running go back in the queue. */
  async requeueUnfinished(): Promise<number> {
    return this.#db.run(
      "UPDATE slide_jobs SET status = 'queued', updated_at = ? WHERE status IN ('queued', 'running')",
      [new Date().toISOString()],
    );
  }
}

/** Slide jobs as the routes see them, whichever queue runs them. */
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

/**
 * Takes and runs one job to its end: done, failed, or (when `signal` stops it: the server is
 * closing) back in the queue, in which case the abort is rethrown for a shared queue to retry.
 */
export async function runSlideJob(
  table: SlideJobTable,
  id: string,
  worker: string,
  execute: SlideExecutor,
  dir: string,
  signal: AbortSignal,
): Promise<void> {
  const job = await table.take(id, worker);
  if (!job) return;
  try {
    const summary = await execute(job, dir, signal, (done, total) => {
      void table.update(id, { done, total }).catch(() => undefined);
    });
    await table.update(id, { status: 'done', summary });
  } catch (error) {
    if (signal.aborted) {
      await table.update(id, { status: 'queued' });
      throw error;
    }
    await table.update(id, { status: 'failed', error: jobError(error) });
  }
}

/** What both queues share: the job rows, the folder of their results, and waiting for the running job. */
export abstract class SlideQueueBase implements SlideQueue {
  readonly dir: string;
  protected readonly table: SlideJobTable;
  protected readonly execute: SlideExecutor;
  protected readonly modelId: string;
  protected readonly abort = new AbortController();
  protected running: Promise<void> | null = null;

  constructor(db: Database, dir: string, modelId: string, execute: SlideExecutor) {
    this.table = new SlideJobTable(db);
    this.dir = ensureDir(dir);
    this.modelId = modelId;
    this.execute = execute;
  }

  jobDir(id: string): string {
    return path.join(this.dir, id);
  }

  get(id: string): Promise<SlideJob | undefined> {
    return this.table.get(id);
  }

  list(limit: number, offset: number): Promise<{ total: number; items: SlideJob[] }> {
    return this.table.list(limit, offset);
  }

  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  abstract recover(): Promise<number>;
  abstract create(job: NewSlideJob): Promise<SlideJob>;
  abstract close(): Promise<void>;
}

/** The embedded queue: jobs in the server's own database, run one at a time by this server. */
export class LocalSlideQueue extends SlideQueueBase {
  #wanted = false;
  #closed = false;

  async recover(): Promise<number> {
    const changed = await this.table.requeueUnfinished();
    this.#kick();
    return changed;
  }

  async create(job: NewSlideJob): Promise<SlideJob> {
    await this.table.insert(job, this.modelId);
    this.#kick();
    return (await this.table.get(job.id)) as SlideJob;
  }

  /** Stops the running job between regions; it stays queued and runs again at the next start. */
  async close(): Promise<void> {
    this.#closed = true;
    this.abort.abort();
    await this.idle();
  }

  /** Runs queued jobs until none is left; a job created meanwhile is picked up by the same loop. */
  #kick(): void {
    this.#wanted = true;
    if (this.running || this.#closed) return;
    this.running = (async () => {
      while (this.#wanted && !this.#closed) {
        this.#wanted = false;
        for (let job = await this.table.next(); job && !this.#closed; job = await this.table.next())
          await runSlideJob(
            this.table,
            job.id,
            'local',
            this.execute,
            this.jobDir(job.id),
            this.abort.signal,
          ).catch(() => undefined);
      }
    })().finally(() => {
      this.running = null;
      if (this.#wanted) this.#kick();
    });
  }
}
