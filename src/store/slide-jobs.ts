/**
 * Slide jobs: whole-slide inference is minutes of work, so a submission answers at once with a
 * job that runs in the background. Jobs are rows (this module) beside a queue that hands them
 * to a runner: the embedded queue here, run one at a time by this server, or the shared one of
 * a PostgreSQL deployment (`shared-slide-queue.ts`). What running a job means, the queue is
 * told: the prediction layer's executor. Results live in the job's folder.
 */
import { readdirSync, rmSync, statSync } from 'node:fs';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import type { SlidePrediction } from '../predict/slide-predictor.js';
import { ensureDir } from '../workspace.js';
import type { Database, SqlValue } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';

export type SlideJobStatus = 'queued' | 'running' | 'done' | 'failed' | 'cancelled';

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
  /** The user's or key's id that submitted it; null on an open server. */
  owner: string | null;
  /** Tiles of the model's grid over the slide. */
  work: number;
}

/** A job to queue; without a `modelId`, the queue's model for new jobs answers it. */
export type NewSlideJob = Pick<
  SlideJob,
  'id' | 'fileName' | 'slidePath' | 'uploaded' | 'slideMpp' | 'owner' | 'work'
> &
  Partial<Pick<SlideJob, 'modelId'>>;

/** The model new jobs are recorded for: one, or whichever version is active at submission. */
export type ModelOfNewJobs = string | (() => string);

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
  owner: ['owner', 'text'],
  work: ['work', 'number'],
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
      `INSERT INTO slide_jobs (id, created_at, updated_at, status, file_name, slide_path, uploaded, slide_mpp, model_id, owner, work)
       VALUES (?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)`,
      [
        job.id,
        now,
        now,
        job.fileName,
        job.slidePath,
        job.uploaded ? 1 : 0,
        job.slideMpp,
        modelId,
        job.owner,
        job.work,
      ],
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

  /** The next job to run: the smallest queued one (a huge slide does not hold up small ones), then the oldest. */
  async next(): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `${SELECT} WHERE status = 'queued' ORDER BY work, created_at, ${this.#db.insertOrder} LIMIT 1`,
    );
    return row ? toJob(row) : undefined;
  }

  /** Jobs not yet finished, in all or of one owner: what the queue bounds count. */
  async unfinished(owner?: string | null): Promise<number> {
    const [row] = await this.#db.query<{ n: number | string }>(
      `SELECT COUNT(*) AS n FROM slide_jobs WHERE status IN ('queued', 'running')${owner ? ' AND owner = ?' : ''}`,
      owner ? [owner] : [],
    );
    return Number(row?.n ?? 0);
  }

  /** Marks a queued or running job cancelled; the job, or undefined when there is none to cancel. */
  async cancel(id: string): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE slide_jobs SET status = 'cancelled', updated_at = ? WHERE id = ? AND status IN ('queued', 'running')
       RETURNING ${columnNames(COLUMNS).join(', ')}`,
      [new Date().toISOString(), id],
    );
    return row ? toJob(row) : undefined;
  }

  async statusOf(id: string): Promise<SlideJobStatus | undefined> {
    const [row] = await this.#db.query<{ status: SlideJobStatus }>(
      'SELECT status FROM slide_jobs WHERE id = ?',
      [id],
    );
    return row?.status;
  }

  /** Marks the job taken by `worker`; undefined when it is gone or no longer to run (cancelled, done). */
  async take(id: string, worker: string): Promise<SlideJob | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(
      `UPDATE slide_jobs SET status = 'running', worker = ?, attempts = attempts + 1, done = 0, total = 0, updated_at = ?
       WHERE id = ? AND status IN ('queued', 'running') RETURNING ${columnNames(COLUMNS).join(', ')}`,
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
  cancel(id: string): Promise<SlideJob | undefined>;
  /** Jobs queued or running, in all or of one owner. */
  unfinished(owner?: string | null): Promise<number>;
  close(): Promise<void>;
}

export async function findJob(queue: SlideQueue, id: string): Promise<SlideJob> {
  const job = await queue.get(id);
  if (!job) throw new PathotypeError('ERR_NOT_FOUND', `no slide job ${id}`);
  return job;
}

/** How often a running job looks whether it was cancelled (on any server of the deployment). */
const CANCEL_POLL_MS = 500;

/**
 * Takes and runs one job to its end: done, failed, cancelled (by its owner, from any server), or
 * (when `shutdown` stops it: the server is closing) back in the queue, in which case the abort is
 * rethrown for a shared queue to retry. A job started more than LIMITS.slideAttempts times (each
 * start after the first means a server stopped or died while it ran) is failed instead.
 */
export async function runSlideJob(
  table: SlideJobTable,
  id: string,
  worker: string,
  execute: SlideExecutor,
  dir: string,
  shutdown: AbortSignal,
): Promise<void> {
  // take() skips a job that is cancelled or done by now.
  const job = await table.take(id, worker);
  if (!job) return;
  if (job.attempts > LIMITS.slideAttempts) {
    await table.update(id, {
      status: 'failed',
      error: {
        code: 'ERR_SLIDE_INTERRUPTED',
        message: `the job was interrupted ${job.attempts - 1} times (a server stopped while it ran); it is not tried again`,
      },
    });
    return;
  }
  const cancel = new AbortController();
  const watch = setInterval(() => {
    void table.statusOf(id).then(
      (status) => status === 'cancelled' && cancel.abort('cancelled'),
      () => undefined,
    );
  }, CANCEL_POLL_MS);
  const onShutdown = (): void => cancel.abort('shutdown');
  shutdown.addEventListener('abort', onShutdown);
  try {
    const summary = await execute(job, dir, cancel.signal, (done, total) => {
      void table.update(id, { done, total }).catch(() => undefined);
    });
    if ((await table.statusOf(id)) !== 'cancelled') await table.update(id, { status: 'done', summary });
  } catch (error) {
    if (cancel.signal.reason === 'cancelled') return;
    if (shutdown.aborted) {
      await table.update(id, { status: 'queued' });
      throw error;
    }
    await table.update(id, { status: 'failed', error: jobError(error) });
  } finally {
    clearInterval(watch);
    shutdown.removeEventListener('abort', onShutdown);
  }
}

/** Uploads a killed server left half-written (`slide.*.part`): removed once an hour old. */
export function removeStaleParts(dir: string, olderThanMs = 3_600_000): number {
  let removed = 0;
  const cutoff = Date.now() - olderThanMs;
  for (const job of readdirSync(dir, { withFileTypes: true })) {
    if (!job.isDirectory()) continue;
    for (const file of readdirSync(path.join(dir, job.name))) {
      const full = path.join(dir, job.name, file);
      if (file.endsWith('.part') && statSync(full).mtimeMs < cutoff) {
        rmSync(full, { force: true });
        removed++;
      }
    }
  }
  return removed;
}

/** What both queues share: the job rows, the folder of their results, and waiting for the running job. */
export abstract class SlideQueueBase implements SlideQueue {
  readonly dir: string;
  protected readonly table: SlideJobTable;
  protected readonly execute: SlideExecutor;
  /** The model a new job is recorded for: the version active when it is submitted. */
  readonly #modelId: () => string;
  protected readonly abort = new AbortController();
  protected running: Promise<void> | null = null;

  constructor(db: Database, dir: string, modelId: ModelOfNewJobs, execute: SlideExecutor) {
    this.table = new SlideJobTable(db);
    this.dir = ensureDir(dir);
    this.#modelId = typeof modelId === 'string' ? () => modelId : modelId;
    this.execute = execute;
    removeStaleParts(this.dir);
  }

  protected get modelId(): string {
    return this.#modelId();
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

  /** Stops a queued or running job, wherever it runs; undefined when none was unfinished. */
  cancel(id: string): Promise<SlideJob | undefined> {
    return this.table.cancel(id);
  }

  unfinished(owner?: string | null): Promise<number> {
    return this.table.unfinished(owner);
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
    await this.table.insert(job, job.modelId ?? this.modelId);
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
