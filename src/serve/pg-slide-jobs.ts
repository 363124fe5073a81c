/**
 * Slide jobs shared by several servers: their records in PostgreSQL, handed out by pg-boss (a
 * maintained Postgres-backed queue), so each job is taken by exactly one server. A server that
 * dies holding a job leaves it active until it expires; pg-boss then retries it and another
 * server takes it. A server closing normally stops its job between regions and hands it back.
 * Slides and results live in the shared serve folder.
 */
import { hostname } from 'node:os';
import path from 'node:path';

import pg from 'pg';
import PgBoss from 'pg-boss';

import type { Predictor } from '../predict/predictor.js';
import { ensureDir } from '../workspace.js';
import { migrate, withMigrationLock } from './pg-records.js';
import {
  executeSlideJob,
  jobError,
  type NewSlideJob,
  type SlideJob,
  type SlideJobStatus,
  type SlideQueue,
} from './slide-jobs.js';

const QUEUE = 'pathotype-slides';

export interface SharedQueueOptions {
  /** A job held longer than this by a silent server is retried elsewhere. Default an hour. */
  expireSeconds?: number;
  /** How often expired jobs are looked for. Default a minute. */
  maintenanceSeconds?: number;
}

interface Row {
  id: string;
  created_at: Date;
  updated_at: Date;
  status: SlideJobStatus;
  file_name: string;
  slide_path: string;
  uploaded: boolean;
  slide_mpp: number | null;
  done: number;
  total: number;
  error: SlideJob['error'];
  summary: SlideJob['summary'];
  model_id: string;
  attempts: number;
  worker: string | null;
}

const toJob = (r: Row): SlideJob & { attempts: number; worker: string | null } => ({
  id: r.id,
  createdAt: r.created_at.toISOString(),
  updatedAt: r.updated_at.toISOString(),
  status: r.status,
  fileName: r.file_name,
  slidePath: r.slide_path,
  uploaded: r.uploaded,
  slideMpp: r.slide_mpp,
  progress: { done: r.done, total: r.total },
  error: r.error,
  summary: r.summary,
  modelId: r.model_id,
  attempts: r.attempts,
  worker: r.worker,
});

export class PgSlideJobs implements SlideQueue {
  readonly dir: string;
  readonly #pool: pg.Pool;
  readonly #boss: PgBoss;
  readonly #predictor: Predictor;
  readonly #modelId: string;
  readonly #worker = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  readonly #abort = new AbortController();
  #running: Promise<void> | null = null;
  readonly #expireSeconds: number;

  private constructor(
    pool: pg.Pool,
    boss: PgBoss,
    dir: string,
    predictor: Predictor,
    modelId: string,
    expireSeconds: number,
  ) {
    this.#expireSeconds = expireSeconds;
    this.#pool = pool;
    this.#boss = boss;
    this.dir = dir;
    this.#predictor = predictor;
    this.#modelId = modelId;
  }

  static async open(
    url: string,
    dir: string,
    predictor: Predictor,
    modelId: string,
    options: SharedQueueOptions = {},
  ): Promise<PgSlideJobs> {
    const pool = new pg.Pool({ connectionString: url, max: 4 });
    pool.on('error', () => undefined);
    await migrate(pool);
    const boss = new PgBoss({
      connectionString: url,
      max: 4,
      maintenanceIntervalSeconds: options.maintenanceSeconds ?? 60,
      monitorStateIntervalSeconds: 60,
    });
    boss.on('error', () => undefined);
    // pg-boss installs its schema at start: servers starting together take turns.
    await withMigrationLock(pool, async () => {
      await boss.start();
      await boss.createQueue(QUEUE, {
        name: QUEUE,
        retryLimit: 3,
        retryDelay: 1,
        expireInSeconds: options.expireSeconds ?? 3600,
      });
    });
    const jobs = new PgSlideJobs(
      pool,
      boss,
      ensureDir(dir),
      predictor,
      modelId,
      options.expireSeconds ?? 3600,
    );
    await boss.work<{ id: string }>(QUEUE, { batchSize: 1, pollingIntervalSeconds: 1 }, async ([job]) => {
      if (job) await jobs.#take(job.data.id);
    });
    return jobs;
  }

  jobDir(id: string): string {
    return path.join(this.dir, id);
  }

  recover(): Promise<number> {
    return Promise.resolve(0);
  }

  async create(job: NewSlideJob): Promise<SlideJob> {
    await this.#pool.query(
      `INSERT INTO slide_jobs (id, status, file_name, slide_path, uploaded, slide_mpp, model_id)
       VALUES ($1, 'queued', $2, $3, $4, $5, $6)`,
      [job.id, job.fileName, job.slidePath, job.uploaded, job.slideMpp, this.#modelId],
    );
    await this.#boss.send(
      QUEUE,
      { id: job.id },
      { singletonKey: job.id, expireInSeconds: this.#expireSeconds },
    );
    return (await this.get(job.id)) as SlideJob;
  }

  async get(id: string): Promise<(SlideJob & { attempts: number; worker: string | null }) | undefined> {
    const { rows } = await this.#pool.query<Row>('SELECT * FROM slide_jobs WHERE id = $1', [id]);
    return rows[0] ? toJob(rows[0]) : undefined;
  }

  async list(limit: number, offset: number): Promise<{ total: number; items: SlideJob[] }> {
    const total = await this.#pool.query<{ n: string }>('SELECT COUNT(*) AS n FROM slide_jobs');
    const { rows } = await this.#pool.query<Row>(
      'SELECT * FROM slide_jobs ORDER BY created_at DESC, seq DESC LIMIT $1 OFFSET $2',
      [limit, offset],
    );
    return { total: Number(total.rows[0]?.n ?? 0), items: rows.map(toJob) };
  }

  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** Stops taking jobs; a running one stops between regions and goes back to the queue. */
  async close(): Promise<void> {
    this.#abort.abort();
    await this.#boss.offWork(QUEUE).catch(() => undefined);
    await this.idle();
    await this.#boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    await this.#pool.end();
  }

  async #update(id: string, fields: Record<string, unknown>): Promise<void> {
    const keys = Object.keys(fields);
    await this.#pool.query(
      `UPDATE slide_jobs SET ${keys.map((k, i) => `${k} = $${i + 2}`).join(', ')}, updated_at = now() WHERE id = $1`,
      [id, ...keys.map((k) => fields[k])],
    );
  }

  /** pg-boss handed this server the job: run it; a throw hands it back for a retry. */
  async #take(id: string): Promise<void> {
    const run = (async () => {
      const { rows } = await this.#pool.query<Row>(
        `UPDATE slide_jobs SET status = 'running', worker = $2, attempts = attempts + 1, done = 0, total = 0, updated_at = now()
         WHERE id = $1 RETURNING *`,
        [id, this.#worker],
      );
      const row = rows[0];
      if (!row) return;
      try {
        const summary = await executeSlideJob(
          this.#predictor,
          toJob(row),
          this.jobDir(id),
          this.#abort.signal,
          (done, total) => void this.#update(id, { done, total }).catch(() => undefined),
        );
        await this.#update(id, { status: 'done', summary });
      } catch (error) {
        if (this.#abort.signal.aborted) {
          await this.#update(id, { status: 'queued' });
          throw error;
        }
        await this.#update(id, { status: 'failed', error: jobError(error) });
      }
    })();
    this.#running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      await run;
    } finally {
      this.#running = null;
    }
  }
}
