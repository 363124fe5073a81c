/**
 * What the routes share, decorated onto the server as `app.pathotype`: the predictor, the
 * store, the inference limit, and the steps behind every route (check an upload from its header,
 * wait for the engine, predict, keep the image, record the result; receive a slide and queue its
 * job). It takes plain values: the routes parse HTTP, this knows nothing of Fastify.
 */
import { randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import { ConfigError, PathotypeError } from '../errors.js';
import { decodeRgb, probeImage, type RgbImage } from '../image/image-io.js';
import type { ModelManifest } from '../model/package.js';
import type { Predictor } from '../predict/predictor.js';
import { readSlideResult } from '../predict/slide-job.js';
import { planSlide } from '../predict/slide-plan.js';
import { LIMITS } from '../limits.js';
import type { Role } from '../store/users.js';
import type { SlidePrediction } from '../predict/slide-predictor.js';
import { Slide } from '../slide/slide.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { ServerStore } from '../store/open.js';
import { findJob, type SlideJob, type SlideQueue } from '../store/slide-jobs.js';
import { ensureDir } from '../workspace.js';
import { checkSlideUpload, sniffImage, UPLOADED_SLIDE_EXTENSIONS } from './decoders.js';
import type { InferenceLimiter } from './inference-limiter.js';
import { SlideTiles } from './slide-tiles.js';
import type { ServedModel, ServedModels } from './served-models.js';
import { signalsOf } from './case-signals.js';

declare module 'fastify' {
  interface FastifyInstance {
    pathotype: PredictionService;
  }
}

/** An image sent for prediction, received into a file of the uploads folder. */
export interface ImageUpload {
  /** The server's copy: kept as the record's image, or removed, by predict(). */
  file: string;
  bytes: number;
  sha256: string;
  /** As the sender named it. */
  fileName: string;
  /** Its pixel scale relative to the original release, when the sender knows it. */
  scale?: number;
  /** The model name to answer with (its active version); default: the server's first. */
  model?: string;
}

/** Who asked, for the record. */
export type Client = PredictionRecord['client'];

/** A slide sent for prediction: streamed in, or a path under the server's slide root. */
export type SlideSubmission =
  | { kind: 'upload'; stream: Readable; fileName: string; truncated: () => boolean }
  | { kind: 'path'; path: string };

export interface ServiceLimits {
  maxPixels: number;
  /** Largest image upload, in bytes. */
  maxBytes: number;
  keepImages: boolean;
  /** Slides submitted by path must lie under it; none: only uploads. */
  slideRoot?: string;
  slideMaxBytes: number;
}

export class PredictionService {
  /** The viewers' Deep Zoom tiles: open slides and a disk cache, both bounded. */
  readonly tiles: SlideTiles;

  constructor(
    readonly models: ServedModels,
    readonly store: ServerStore,
    readonly limiter: InferenceLimiter,
    readonly limits: ServiceLimits,
    readonly slides: SlideQueue,
  ) {
    this.tiles = new SlideTiles();
  }

  /** The default name's active version: what an upload that names no model is answered by. */
  get predictor(): Predictor {
    return this.models.active().predictor;
  }

  get manifest(): ModelManifest {
    return this.predictor.manifest;
  }

  /** name@version of the default name's active version. */
  get modelId(): string {
    return this.models.active().id;
  }

  /** The manifest of the version that answered a record; null when this server no longer holds it. */
  manifestOf(modelId: string): ModelManifest | null {
    return this.models.get(modelId)?.predictor.manifest ?? null;
  }

  async close(): Promise<void> {
    await this.slides.close();
    await this.tiles.close();
  }

  /**
   * `signal`: the client hung up; the prediction stops taking the engine. The upload's file is
   * kept as the record's image or removed, whatever happens.
   */
  async predict(upload: ImageUpload, client: Client, signal?: AbortSignal): Promise<PredictionRecord> {
    try {
      return await asSent(this.#predict(upload, client, signal), upload);
    } finally {
      rmSync(upload.file, { force: true });
    }
  }

  async #predict(upload: ImageUpload, client: Client, signal?: AbortSignal): Promise<PredictionRecord> {
    const started = performance.now();
    const { file, fileName } = upload;
    // Judged by its first bytes, then its header checked against the limits, before any pixel
    // is decoded; once.
    await sniffImage(file, fileName);
    const probe = await probeImage(file, { maxPixels: this.limits.maxPixels });
    const model = await this.modelFor(upload.model);
    const queued = performance.now();
    let queueMs = 0;
    const [result] = await this.limiter.run(async () => {
      queueMs = performance.now() - queued;
      return model.predictor.predictImages(
        [{ source: file, name: fileName, probe, ...(upload.scale ? { scale: upload.scale } : {}) }],
        signal,
      );
    }, signal);
    if (!result) throw new PathotypeError('ERR_INTERNAL', 'no prediction came back');
    const records = this.store.predictions;
    const id = records.newId();
    let imageFile: string | null = null;
    if (this.limits.keepImages) {
      imageFile = `${id}.${probe.format === 'jpeg' ? 'jpg' : probe.format === 'tiff' ? 'tif' : probe.format}`;
      await rename(file, path.join(records.uploadsDir, imageFile));
    }
    const record: PredictionRecord = {
      id,
      createdAt: new Date().toISOString(),
      fileName,
      sha256: upload.sha256,
      bytes: upload.bytes,
      width: probe.width,
      height: probe.height,
      modelId: model.id,
      modelVersion: model.version,
      result,
      timings: {
        totalMs: performance.now() - started,
        queueMs,
        preprocessMs: result.timings.preprocessMs,
        inferenceMs: result.timings.inferenceMs,
      },
      client,
      imageFile,
    };
    await records.insert(record);
    await this.store.signals.add(signalsOf(record));
    return record;
  }

  async find(id: string): Promise<PredictionRecord> {
    const record = await this.store.predictions.get(id);
    if (!record) throw new PathotypeError('ERR_NOT_FOUND', `no prediction ${id}`);
    return record;
  }

  /** The kept image's file; ERR_NOT_FOUND when it was not kept. */
  imageFileOf(record: PredictionRecord): string {
    const file = this.store.predictions.imagePath(record);
    if (!file) throw new PathotypeError('ERR_NOT_FOUND', `the image of prediction ${record.id} was not kept`);
    return file;
  }

  /** The kept image, at the size the model saw it. */
  async imageOf(record: PredictionRecord): Promise<RgbImage> {
    return decodeRgb(await readFile(this.imageFileOf(record)), {
      width: record.result.grid.width,
      height: record.result.grid.height,
      maxPixels: this.limits.maxPixels,
    });
  }

  /** The active version of a model name (the server's first name by default): ERR_NOT_FOUND for a name it does not hold. */
  async modelFor(name?: string): Promise<ServedModel> {
    await this.models.refresh();
    return this.models.active(name);
  }

  /**
   * A slide job for the submission, queued. Refused now, not as a failed job hours later: a full
   * queue (in all or for this client), a used-up disk quota, a file OpenSlide cannot read, and a
   * slide whose work is beyond the budget (LIMITS).
   */
  async submitSlide(
    submission: SlideSubmission,
    slideMpp: number | null,
    owner: string | null,
    model?: ServedModel,
  ): Promise<SlideJob> {
    const answering = model ?? (await this.modelFor());
    await this.#checkQueue(owner);
    const id = randomUUID();
    const dir = this.slides.jobDir(id);
    let slidePath: string;
    let fileName: string;
    let work: number;
    try {
      if (submission.kind === 'upload') {
        slidePath = await this.#receiveSlide(submission, dir, this.#diskLeft());
        fileName = submission.fileName;
      } else {
        slidePath = underRoot(this.limits.slideRoot, submission.path);
        // The name as the sender wrote it: the resolved path would name the server's folders.
        fileName = path.basename(submission.path);
      }
      work = await asSent(this.#slideWork(answering, slidePath, slideMpp), {
        file: slidePath,
        fileName: submission.kind === 'upload' ? submission.fileName : submission.path,
      });
    } catch (error) {
      rmSync(dir, { recursive: true, force: true });
      throw error;
    }
    return this.slides.create({
      id,
      fileName,
      slidePath,
      uploaded: submission.kind === 'upload',
      slideMpp,
      owner,
      work,
      modelId: answering.id,
    });
  }

  /** Tiles of the model's grid over the slide, from its header. */
  async #slideWork(model: ServedModel, slidePath: string, slideMpp: number | null): Promise<number> {
    const slide = await Slide.open(slidePath);
    try {
      const plan = planSlide(model.predictor.manifest.preprocess, slide.info, slideMpp ? { slideMpp } : {});
      return plan.cols * plan.rows;
    } finally {
      await slide.close();
    }
  }

  async #checkQueue(owner: string | null): Promise<void> {
    if ((await this.slides.unfinished()) >= LIMITS.slideJobsQueued)
      throw new PathotypeError(
        'ERR_BUSY',
        `${LIMITS.slideJobsQueued} slide jobs are waiting already: retry later`,
      );
    if (owner && (await this.slides.unfinished(owner)) >= LIMITS.slideJobsPerClient)
      throw new PathotypeError(
        'ERR_BUSY',
        `you have ${LIMITS.slideJobsPerClient} slide jobs waiting already: retry when one is done, or cancel one`,
      );
  }

  /** Bytes of the upload quota not taken by the slides uploaded so far. */
  #diskLeft(): number {
    let used = 0;
    for (const entry of readdirSync(this.slides.dir, { withFileTypes: true })) {
      if (!entry.isDirectory()) continue;
      for (const file of readdirSync(path.join(this.slides.dir, entry.name)))
        if (file.startsWith('slide.')) used += statSync(path.join(this.slides.dir, entry.name, file)).size;
    }
    const left = LIMITS.slideDiskGigabytes * 2 ** 30 - used;
    if (left <= 0)
      throw new PathotypeError(
        'ERR_QUOTA',
        `uploaded slides take the whole ${LIMITS.slideDiskGigabytes} GiB quota: submit by path, or remove old jobs`,
      );
    return left;
  }

  /**
   * Cancels a queued or running job: its owner may (a user through any of their keys or the
   * portal; jobs recorded before owners were users name the key itself), and an admin.
   */
  async cancelSlide(
    id: string,
    by: { id: string | null; role: Role; owner: { id: string | null } },
  ): Promise<SlideJob> {
    const job = await this.findSlideJob(id);
    if (job.owner && job.owner !== by.owner.id && job.owner !== by.id && by.role !== 'admin')
      throw new PathotypeError(
        'ERR_FORBIDDEN',
        'only the one who submitted a slide job, or an admin, may cancel it',
      );
    if (!(await this.slides.cancel(id)))
      throw new PathotypeError(
        'ERR_NOT_READY',
        `slide job ${id} is ${job.status}: there is nothing to cancel`,
      );
    return this.findSlideJob(id);
  }

  findSlideJob(id: string): Promise<SlideJob> {
    return findJob(this.slides, id);
  }

  /** The finished job's full prediction (tiles included); ERR_NOT_READY before. */
  async slideResult(id: string): Promise<SlidePrediction> {
    const job = await this.findSlideJob(id);
    const result = job.status === 'done' ? readSlideResult(this.slides.jobDir(id)) : undefined;
    if (!result) throw new PathotypeError('ERR_NOT_READY', `slide job ${id} is ${job.status}, not done`);
    return result;
  }

  /** A file the finished job wrote (its overlay and the overlay's pyramid). */
  async slideResultFile(id: string, name: string): Promise<string> {
    await this.slideResult(id);
    const file = path.join(this.slides.jobDir(id), name);
    if (!existsSync(file)) throw new PathotypeError('ERR_NOT_FOUND', `slide job ${id} has no ${name}`);
    return file;
  }

  /** The job's slide as a Deep Zoom image: its size, from the (kept open) slide. */
  async slideSize(jobId: string): Promise<{ width: number; height: number }> {
    const job = await this.findSlideJob(jobId);
    return this.tiles.withSlide(jobId, job.slidePath, (slide) =>
      Promise.resolve({ width: slide.info.width, height: slide.info.height }),
    );
  }

  /** One Deep Zoom tile of the job's slide (JPEG). */
  async slideTile(jobId: string, level: number, col: number, row: number): Promise<Buffer> {
    const job = await this.findSlideJob(jobId);
    return this.tiles.tile(jobId, job.slidePath, level, col, row);
  }

  /** Streams the slide to the job's folder, never holding it in memory, within `room` bytes. */
  async #receiveSlide(
    upload: Extract<SlideSubmission, { kind: 'upload' }>,
    dir: string,
    room: number,
  ): Promise<string> {
    const extension = path.extname(upload.fileName).toLowerCase();
    if (!UPLOADED_SLIDE_EXTENSIONS.includes(extension)) {
      upload.stream.resume();
      throw new PathotypeError(
        'ERR_SLIDE_UNSUPPORTED',
        `${JSON.stringify(upload.fileName)}: send a single-file slide (${UPLOADED_SLIDE_EXTENSIONS.join(', ')}); multi-file formats go by path`,
      );
    }
    ensureDir(dir);
    const target = path.join(dir, `slide${extension}`);
    let received = 0;
    upload.stream.on('data', (chunk: Buffer) => {
      received += chunk.length;
      if (received > room)
        upload.stream.destroy(new PathotypeError('ERR_QUOTA', 'the upload does not fit in the slide quota'));
    });
    try {
      await pipeline(upload.stream, createWriteStream(`${target}.part`));
    } catch (error) {
      rmSync(`${target}.part`, { force: true });
      throw error;
    }
    if (upload.truncated()) {
      rmSync(`${target}.part`, { force: true });
      throw new PathotypeError(
        'ERR_TOO_LARGE',
        `${JSON.stringify(upload.fileName)} is larger than the ${(this.limits.slideMaxBytes / 2 ** 30).toFixed(1)} GiB this server accepts`,
      );
    }
    // Its first bytes are those of its format, or OpenSlide never sees it.
    await checkSlideUpload(`${target}.part`, upload.fileName, extension).catch((error: unknown) => {
      rmSync(`${target}.part`, { force: true });
      throw error;
    });
    await rename(`${target}.part`, target);
    return target;
  }
}

/**
 * A slide file under the slide root, with symbolic links resolved: nothing outside it is
 * readable. Refusals quote the path as sent and never the folders it resolved to.
 */
function underRoot(root: string | undefined, relative: string): string {
  if (!root)
    throw new ConfigError(
      'this server has no slide root: start it with --slide-root DIR, or upload the slide',
    );
  const refused = new PathotypeError(
    'ERR_NOT_FOUND',
    `${JSON.stringify(relative)} is not a slide file under the slide root`,
  );
  const base = realpathSync(root);
  const candidate = path.resolve(base, relative);
  if (!existsSync(candidate)) throw refused;
  const real = realpathSync(candidate);
  if (!real.startsWith(base + path.sep) || !statSync(real).isFile()) throw refused;
  return real;
}

/**
 * Errors about a file the server holds (an upload's copy, a slide under the root) name it as
 * the sender did, quoted as sent, never by the server's path.
 */
async function asSent<T>(work: Promise<T>, names: { file: string; fileName: string }): Promise<T> {
  try {
    return await work;
  } catch (error) {
    if (error instanceof Error && names.file)
      error.message = error.message.replaceAll(names.file, JSON.stringify(names.fileName));
    throw error;
  }
}
