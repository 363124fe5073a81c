/**
 * What the routes share, decorated onto the server as `app.pathotype`: the predictor, the
 * store, the inference limit, and the steps behind every route (check an upload from its header,
 * wait for the engine, predict, keep the image, record the result; receive a slide and queue its
 * job). It takes plain values: the routes parse HTTP, this knows nothing of Fastify.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, existsSync, readdirSync, realpathSync, rmSync, statSync } from 'node:fs';
import { readFile, rename, writeFile } from 'node:fs/promises';
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
import { Slide, SLIDE_EXTENSIONS } from '../slide/slide.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { ServerStore } from '../store/open.js';
import { findJob, type SlideJob, type SlideQueue } from '../store/slide-jobs.js';
import { ensureDir } from '../workspace.js';
import type { InferenceLimiter } from './inference-limiter.js';
import { SlideTiles } from './slide-tiles.js';

/** Single-file slides an upload may be: OpenSlide's formats and plain (pyramidal) TIFF. */
const UPLOADED_SLIDE_EXTENSIONS = [...SLIDE_EXTENSIONS, '.tif', '.tiff'];

declare module 'fastify' {
  interface FastifyInstance {
    pathotype: PredictionService;
  }
}

/** name@version: what records, jobs and the API call a model. */
export function modelIdOf(manifest: ModelManifest): string {
  return `${manifest.name}@${manifest.version}`;
}

/** An image sent for prediction. */
export interface ImageUpload {
  buffer: Buffer;
  fileName: string;
  /** Its pixel scale relative to the original release, when the sender knows it. */
  scale?: number;
}

/** Who asked, for the record. */
export type Client = PredictionRecord['client'];

/** A slide sent for prediction: streamed in, or a path under the server's slide root. */
export type SlideSubmission =
  | { kind: 'upload'; stream: Readable; fileName: string; truncated: () => boolean }
  | { kind: 'path'; path: string };

export interface ServiceLimits {
  maxPixels: number;
  keepImages: boolean;
  /** Slides submitted by path must lie under it; none: only uploads. */
  slideRoot?: string;
  slideMaxBytes: number;
}

export class PredictionService {
  readonly manifest: ModelManifest;
  /** name@version: what records and the API call this model. */
  readonly modelId: string;
  /** The viewers' Deep Zoom tiles: open slides and a disk cache, both bounded. */
  readonly tiles: SlideTiles;

  constructor(
    readonly predictor: Predictor,
    readonly store: ServerStore,
    readonly limiter: InferenceLimiter,
    readonly limits: ServiceLimits,
    readonly slides: SlideQueue,
  ) {
    this.manifest = predictor.manifest;
    this.modelId = modelIdOf(this.manifest);
    this.tiles = new SlideTiles();
  }

  async close(): Promise<void> {
    await this.slides.close();
    await this.tiles.close();
  }

  /** `signal`: the client hung up; the prediction stops taking the engine. */
  async predict(upload: ImageUpload, client: Client, signal?: AbortSignal): Promise<PredictionRecord> {
    const started = performance.now();
    const { buffer, fileName } = upload;
    // Sniffed from the bytes, checked against the limits, before any pixel is decoded; once.
    const probe = await probeImage(buffer, { maxPixels: this.limits.maxPixels });
    const queued = performance.now();
    let queueMs = 0;
    const [result] = await this.limiter.run(async () => {
      queueMs = performance.now() - queued;
      return this.predictor.predictImages(
        [{ source: buffer, name: fileName, probe, ...(upload.scale ? { scale: upload.scale } : {}) }],
        signal,
      );
    }, signal);
    if (!result) throw new PathotypeError('ERR_INTERNAL', 'no prediction came back');
    const records = this.store.predictions;
    const id = records.newId();
    let imageFile: string | null = null;
    if (this.limits.keepImages) {
      imageFile = `${id}.${probe.format === 'jpeg' ? 'jpg' : probe.format === 'tiff' ? 'tif' : probe.format}`;
      const target = path.join(records.uploadsDir, imageFile);
      await writeFile(`${target}.tmp`, buffer);
      await rename(`${target}.tmp`, target);
    }
    const record: PredictionRecord = {
      id,
      createdAt: new Date().toISOString(),
      fileName,
      sha256: createHash('sha256').update(buffer).digest('hex'),
      bytes: buffer.length,
      width: probe.width,
      height: probe.height,
      modelId: this.modelId,
      modelVersion: this.manifest.version,
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

  /**
   * A slide job for the submission, queued. Refused now, not as a failed job hours later: a full
   * queue (in all or for this client), a used-up disk quota, a file OpenSlide cannot read, and a
   * slide whose work is beyond the budget (LIMITS).
   */
  async submitSlide(
    submission: SlideSubmission,
    slideMpp: number | null,
    owner: string | null,
  ): Promise<SlideJob> {
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
        fileName = path.basename(slidePath);
      }
      const slide = await Slide.open(slidePath);
      try {
        const plan = planSlide(this.predictor.manifest.preprocess, slide.info, slideMpp ? { slideMpp } : {});
        work = plan.cols * plan.rows;
      } finally {
        await slide.close();
      }
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
    });
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

  /** Cancels a queued or running job: its owner may, and an admin. */
  async cancelSlide(id: string, by: { id: string | null; role: Role }): Promise<SlideJob> {
    const job = await this.findSlideJob(id);
    if (job.owner && job.owner !== by.id && by.role !== 'admin')
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
        `${upload.fileName}: send a single-file slide (${[...SLIDE_EXTENSIONS, '.tif'].join(', ')}); multi-file formats go by path`,
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
        `${upload.fileName} is larger than the ${(this.limits.slideMaxBytes / 2 ** 30).toFixed(1)} GiB this server accepts`,
      );
    }
    await rename(`${target}.part`, target);
    return target;
  }
}

/** A path under the slide root, with symbolic links resolved: nothing outside it is readable. */
function underRoot(root: string | undefined, relative: string): string {
  if (!root)
    throw new ConfigError(
      'this server has no slide root: start it with --slide-root DIR, or upload the slide',
    );
  const base = realpathSync(root);
  const candidate = path.resolve(base, relative);
  if (!existsSync(candidate))
    throw new PathotypeError('ERR_NOT_FOUND', `${relative} is not under the slide root`);
  const real = realpathSync(candidate);
  if (real !== base && !real.startsWith(base + path.sep))
    throw new PathotypeError('ERR_NOT_FOUND', `${relative} is not under the slide root`);
  return real;
}
