/**
 * Slide feature extraction spread over machines: one pg-boss job per slide on the shared
 * PostgreSQL `serve` already uses, taken by whichever worker (`pathotype workers features`, or the
 * process that queued them) polls first. Each job carries its slide's catalog record and the
 * recipe, so a worker needs no catalog, only the shared workspace the bags are written to. A
 * slide's features are written exactly once: the queue holds one job per slide (pg-boss'
 * 'stately' policy), a worker finds a finished bag in the cache and does nothing, and a bag
 * appears under its name only when whole. A worker killed mid-slide leaves its job active until
 * it expires; pg-boss then hands it to another.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import PgBoss from 'pg-boss';

import type { SlideRecord } from '../acquire/catalog.js';
import { PathotypeError, type ErrorCode } from '../errors.js';
import { PostgresDatabase } from '../store/postgres.js';
import {
  extractSlideBags,
  slideBagDir,
  slideBagFile,
  type SlideBagProgress,
  type SlideBagRequest,
} from '../train/slide-bags.js';
import type { Workspace } from '../workspace.js';
import type { Preset } from './presets.js';
import { openSlideEncoder, type SlideEncoder } from './slide-encoder.js';

const QUEUE = 'pathotype-slide-features';
/** A job held this long by a silent worker goes to another: longer than any one slide takes on a CPU. */
const EXPIRE_SECONDS = 4 * 3600;
/** How often a worker asks for a job, and the queuing process looks for finished bags. */
const POLL_SECONDS = 1;

export interface FeatureJob {
  slide: SlideRecord;
  classes: string[];
  recipe: Preset;
  /** The base's feature cache key where the job was queued: a worker whose base differs refuses it. */
  encoder: string;
}

/** The queue on one database: its pg-boss over the database's pool. */
class FeatureQueue {
  private constructor(
    readonly db: PostgresDatabase,
    readonly boss: PgBoss,
  ) {}

  static async open(url: string): Promise<FeatureQueue> {
    if (!/^postgres(ql)?:\/\//.test(url))
      throw new PathotypeError(
        'ERR_CONFIG',
        `--database takes a postgres:// URL (got '${url.replace(/:[^:@/]*@/, ':***@')}')`,
      );
    const db = await PostgresDatabase.open(url);
    const boss = new PgBoss({
      db: { executeSql: (text, values) => db.pool.query(text, values) },
      maintenanceIntervalSeconds: 60,
      monitorStateIntervalSeconds: 60,
    });
    boss.on('error', () => undefined);
    try {
      // pg-boss installs its schema at start: processes starting together take turns.
      await db.withSchemaLock(async () => {
        await boss.start();
        await boss.createQueue(QUEUE, {
          name: QUEUE,
          policy: 'stately',
          retryLimit: 2,
          retryDelay: 1,
          expireInSeconds: EXPIRE_SECONDS,
        });
      });
    } catch (error) {
      await db.close();
      throw error;
    }
    return new FeatureQueue(db, boss);
  }

  /** Queues a slide's job unless one is already waiting (its key: the bag's file name); its id, or null. */
  send(job: FeatureJob, key: string): Promise<string | null> {
    return this.boss.send(QUEUE, job, { singletonKey: key, expireInSeconds: EXPIRE_SECONDS });
  }

  /** Takes jobs one at a time until `stop`; a throw fails the job (pg-boss retries it, twice). */
  async work(handler: (job: FeatureJob) => Promise<void>): Promise<void> {
    await this.boss.work<FeatureJob>(
      QUEUE,
      { batchSize: 1, pollingIntervalSeconds: POLL_SECONDS },
      async ([job]) => {
        if (job) await handler(job.data);
      },
    );
  }

  /**
   * The error of a slide's newest job (by its key, whoever queued it: a process that found the
   * job already queued has no id of its own), once that job has failed for good; else null.
   */
  async failure(key: string): Promise<PathotypeError | null> {
    const { rows } = await this.db.pool.query<{ state: string; data: FeatureJob; output: unknown }>(
      'SELECT state, data, output FROM pgboss.job WHERE name = $1 AND singleton_key = $2 ORDER BY created_on DESC LIMIT 1',
      [QUEUE, key],
    );
    const job = rows[0];
    if (job?.state !== 'failed') return null;
    const output = (job.output ?? {}) as { code?: string; message?: string };
    return new PathotypeError(
      (output.code ?? 'ERR_TRAIN') as ErrorCode,
      `the features of ${job.data.slide.path} failed on every try: ${output.message ?? 'no message'}`,
    );
  }

  async close(): Promise<void> {
    await this.boss.offWork(QUEUE).catch(() => undefined);
    await this.boss.stop({ graceful: false, wait: true }).catch(() => undefined);
    await this.db.close();
  }
}

/** The encoder a job's recipe opens, kept open for the next job of the same recipe; one given by the caller stays the caller's to close. */
class EncoderCache {
  #key = '';
  #open: SlideEncoder | null = null;
  #owned = false;

  constructor(
    readonly workspace: Workspace,
    given?: { recipe: Preset; classes: readonly string[]; encoder: SlideEncoder },
  ) {
    if (given) {
      this.#key = JSON.stringify([given.recipe, given.classes]);
      this.#open = given.encoder;
    }
  }

  async get(job: FeatureJob, onNotice?: (message: string) => void): Promise<SlideEncoder> {
    const key = JSON.stringify([job.recipe, job.classes]);
    if (this.#open && this.#key === key) return this.#open;
    await this.close();
    this.#open = await openSlideEncoder(this.workspace, job.recipe, job.classes, { onNotice });
    this.#key = key;
    this.#owned = true;
    return this.#open;
  }

  async close(): Promise<void> {
    const open = this.#owned ? this.#open : null;
    this.#open = null;
    this.#owned = false;
    await open?.close();
  }
}

interface JobHandlerOptions {
  onProgress?: (p: SlideBagProgress) => void;
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
}

/** Extracts one job's slide (nothing when its bag is already in the cache). */
function jobHandler(
  workspace: Workspace,
  encoders: EncoderCache,
  options: JobHandlerOptions,
): (job: FeatureJob) => Promise<void> {
  return async (job) => {
    const encoder = await encoders.get(job, options.onNotice);
    const features = encoder.base.features;
    if (features.cacheKey !== job.encoder)
      throw new PathotypeError(
        'ERR_CONFIG',
        `this worker's frozen base has the feature key ${features.cacheKey}, the job's ${job.encoder}: ` +
          "this machine's weights or base differ from those of the machine that queued the job (give every worker the same weights)",
      );
    await extractSlideBags({
      workspace,
      slides: [job.slide],
      classes: job.classes,
      preprocess: encoder.preprocess,
      features,
      ...options,
    });
  };
}

/**
 * Queues one job per slide whose bag is not in the cache yet, works on the queue like any worker
 * (with the encoder already open), and returns when every queued slide's bag is there: whoever
 * extracted it. A job failed on every try ends it with the job's error.
 */
export async function extractOnQueue(
  database: string,
  recipe: Preset,
  encoder: SlideEncoder,
  request: Omit<SlideBagRequest, 'onProgress'>,
  options: JobHandlerOptions = {},
): Promise<{ queued: number }> {
  const { workspace, slides, classes, preprocess } = request;
  const dir = slideBagDir(workspace, encoder.base.features.cacheKey);
  const waiting = slides
    .map((slide) => ({ slide, file: slideBagFile(dir, slide, classes, preprocess) }))
    .filter(({ file }) => !existsSync(file));
  if (waiting.length === 0) return { queued: 0 };
  const queue = await FeatureQueue.open(database);
  const encoders = new EncoderCache(workspace, { recipe, classes, encoder });
  try {
    const encoderKey = encoder.base.features.cacheKey;
    // Null where a job for the slide is already queued (by another process): waited for the same way.
    for (const { slide, file } of waiting)
      await queue.send({ slide, classes: [...classes], recipe, encoder: encoderKey }, path.basename(file));
    options.onNotice?.(
      `queued ${waiting.length} slides on the database; working on them with every worker there`,
    );
    await queue.work(jobHandler(workspace, encoders, options));
    await untilWritten(queue, waiting, request.signal);
    return { queued: waiting.length };
  } finally {
    await queue.close();
    await encoders.close();
  }
}

/**
 * Waits until every slide's bag is there, whoever writes it; a slide whose job failed on every
 * try, whoever queued it, ends the wait with its error.
 */
async function untilWritten(
  queue: FeatureQueue,
  waiting: readonly { file: string }[],
  signal: AbortSignal | undefined,
): Promise<void> {
  for (;;) {
    const left = waiting.filter(({ file }) => !existsSync(file));
    if (left.length === 0) return;
    for (const { file } of left) {
      const failed = await queue.failure(path.basename(file));
      if (failed) throw failed;
    }
    if (signal?.aborted) throw new PathotypeError('ERR_ABORTED', 'feature extraction was stopped');
    await new Promise((resolve) => setTimeout(resolve, POLL_SECONDS * 1000));
  }
}

export interface FeatureWorkerOptions extends JobHandlerOptions {
  workspace: Workspace;
  database: string;
  /** Stop after this many seconds without a job (scripts, tests); default: only when `signal` says so. */
  idleExitSeconds?: number;
  /** Called as each job starts (its slide) and ends. */
  onJob?: (slide: SlideRecord, state: 'started' | 'done' | 'failed', error?: unknown) => void;
}

/** A feature worker: takes slide jobs from the database until stopped, or idle for `idleExitSeconds`. */
export async function runFeatureWorker(options: FeatureWorkerOptions): Promise<{ jobs: number }> {
  const queue = await FeatureQueue.open(options.database);
  const encoders = new EncoderCache(options.workspace);
  let jobs = 0;
  let busy = false;
  let lastActive = performance.now();
  const handle = jobHandler(options.workspace, encoders, options);
  try {
    await queue.work(async (job) => {
      busy = true;
      options.onJob?.(job.slide, 'started');
      try {
        await handle(job);
        jobs++;
        options.onJob?.(job.slide, 'done');
      } catch (error) {
        options.onJob?.(job.slide, 'failed', error);
        throw error;
      } finally {
        busy = false;
        lastActive = performance.now();
      }
    });
    await new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const idle = (performance.now() - lastActive) / 1000;
        const idleOut = options.idleExitSeconds !== undefined && idle >= options.idleExitSeconds;
        if (!busy && (idleOut || options.signal?.aborted)) {
          clearInterval(timer);
          resolve();
        }
      }, 200);
    });
    return { jobs };
  } finally {
    await queue.close();
    await encoders.close();
  }
}
