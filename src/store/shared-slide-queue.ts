/**
 * Slide jobs shared by several servers: their rows in PostgreSQL, handed out by pg-boss (a
 * maintained Postgres-backed queue) over the server's one pool, so each job is taken by exactly
 * one server. A server that dies holding a job leaves it active until it expires; pg-boss then
 * retries it and another server takes it. A server closing normally stops its job between
 * regions and hands it back. Slides and results live in the shared serve folder.
 */
import { hostname } from 'node:os';

import PgBoss from 'pg-boss';

import type { PostgresDatabase } from './postgres.js';
import {
  runSlideJob,
  SlideQueueBase,
  type NewSlideJob,
  type ModelOfNewJobs,
  type SlideExecutor,
  type SlideJob,
} from './slide-jobs.js';

const QUEUE = 'pathotype-slides';

export interface SharedQueueOptions {
  /** A job held longer than this by a silent server is retried elsewhere. Default an hour. */
  expireSeconds?: number;
  /** How often expired jobs are looked for. Default a minute. */
  maintenanceSeconds?: number;
}

export class SharedSlideQueue extends SlideQueueBase {
  readonly #boss: PgBoss;
  readonly #worker = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  readonly #expireSeconds: number;

  private constructor(
    db: PostgresDatabase,
    boss: PgBoss,
    dir: string,
    modelId: ModelOfNewJobs,
    execute: SlideExecutor,
    expireSeconds: number,
  ) {
    super(db, dir, modelId, execute);
    this.#boss = boss;
    this.#expireSeconds = expireSeconds;
  }

  static async open(
    db: PostgresDatabase,
    dir: string,
    modelId: ModelOfNewJobs,
    execute: SlideExecutor,
    options: SharedQueueOptions = {},
  ): Promise<SharedSlideQueue> {
    const expireSeconds = options.expireSeconds ?? 3600;
    const boss = new PgBoss({
      db: { executeSql: (text, values) => db.pool.query(text, values) },
      maintenanceIntervalSeconds: options.maintenanceSeconds ?? 60,
      monitorStateIntervalSeconds: 60,
    });
    boss.on('error', () => undefined);
    // pg-boss installs its schema at start: servers starting together take turns.
    await db.withSchemaLock(async () => {
      await boss.start();
      await boss.createQueue(QUEUE, {
        name: QUEUE,
        retryLimit: 3,
        retryDelay: 1,
        expireInSeconds: expireSeconds,
      });
    });
    const queue = new SharedSlideQueue(db, boss, dir, modelId, execute, expireSeconds);
    await boss.work<{ id: string }>(QUEUE, { batchSize: 1, pollingIntervalSeconds: 1 }, async ([job]) => {
      if (job) await queue.#take(job.data.id);
    });
    return queue;
  }

  /** pg-boss retries what a stopped server held; nothing to do here. */
  recover(): Promise<number> {
    return Promise.resolve(0);
  }

  async create(job: NewSlideJob): Promise<SlideJob> {
    await this.table.insert(job, job.modelId ?? this.modelId);
    await this.#boss.send(
      QUEUE,
      { id: job.id },
      { singletonKey: job.id, expireInSeconds: this.#expireSeconds },
    );
    return (await this.table.get(job.id)) as SlideJob;
  }

  /** Stops taking jobs; a running one stops between regions and goes back to the queue. */
  async close(): Promise<void> {
    this.abort.abort();
    await this.#boss.offWork(QUEUE).catch(() => undefined);
    await this.idle();
    await this.#boss.stop({ graceful: false, wait: true }).catch(() => undefined);
  }

  /** pg-boss handed this server the job: run it; a throw hands it back for a retry. */
  async #take(id: string): Promise<void> {
    const run = runSlideJob(this.table, id, this.#worker, this.execute, this.jobDir(id), this.abort.signal);
    this.running = run.then(
      () => undefined,
      () => undefined,
    );
    try {
      await run;
    } finally {
      this.running = null;
    }
  }
}
