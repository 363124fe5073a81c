/**
 * What the routes share, decorated onto the server as `app.pathotype`: the predictor, the
 * records, the inference queue, and the steps every upload route takes (read the upload, check
 * it from its header, queue it, predict, keep the image, record the result).
 */
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { FastifyRequest } from 'fastify';

import { PathotypeError } from '../errors.js';
import { decodeRgb, probeImage, type RgbImage } from '../image/image-io.js';
import { Slide } from '../slide/slide.js';
import type { ModelManifest } from '../model/package.js';
import type { Predictor } from '../predict/predictor.js';
import type { InferenceLimiter } from './inference-limiter.js';
import type { PredictionRecord, RecordStore } from './records.js';
import { findJob, type SlideQueue } from './slide-jobs.js';

const OPEN_SLIDES = 4;

declare module 'fastify' {
  interface FastifyInstance {
    pathotype: PredictionService;
  }
  interface FastifyRequest {
    /** The API key that authenticated the request; null without keys. */
    keyId: string | null;
  }
}

/** name@version: what records, jobs and the API call a model. */
export function modelIdOf(manifest: ModelManifest): string {
  return `${manifest.name}@${manifest.version}`;
}

export class PredictionService {
  readonly manifest: ModelManifest;
  /** name@version: what records and the API call this model. */
  readonly modelId: string;

  readonly slides: SlideQueue;
  /** Slides open for Deep Zoom tiles, by job id; the oldest closes beyond OPEN_SLIDES. */
  readonly #open = new Map<string, Promise<Slide>>();

  constructor(
    readonly predictor: Predictor,
    readonly records: RecordStore,
    readonly queue: InferenceLimiter,
    readonly limits: {
      maxPixels: number;
      keepImages: boolean;
      /** Slides submitted by path must lie under it; none: only uploads. */
      slideRoot?: string;
      slideMaxBytes: number;
    },
    slides: SlideQueue,
  ) {
    this.manifest = predictor.manifest;
    this.modelId = modelIdOf(this.manifest);
    this.slides = slides;
  }

  /** The slide of a job, kept open for the next tile request. */
  async openSlide(jobId: string): Promise<Slide> {
    const cached = this.#open.get(jobId);
    if (cached) return cached;
    const job = await findJob(this.slides, jobId);
    const opening = Slide.open(job.slidePath);
    this.#open.set(jobId, opening);
    opening.catch(() => this.#open.delete(jobId));
    if (this.#open.size > OPEN_SLIDES) {
      const [oldest, slide] = this.#open.entries().next().value as [string, Promise<Slide>];
      this.#open.delete(oldest);
      void slide.then((s) => s.close()).catch(() => undefined);
    }
    return opening;
  }

  async close(): Promise<void> {
    await this.slides.close();
    for (const slide of this.#open.values()) await slide.then((s) => s.close()).catch(() => undefined);
    this.#open.clear();
  }

  async predict(
    request: FastifyRequest,
    query: { filename?: string; scale?: number },
  ): Promise<PredictionRecord> {
    const started = performance.now();
    const { buffer, fileName } = await readUpload(request, query.filename);
    // Sniffed from the bytes, checked against the limits, before any pixel is decoded.
    const probe = await probeImage(buffer, { maxPixels: this.limits.maxPixels });
    const queued = performance.now();
    let queueMs = 0;
    const [result] = await this.queue.run(async () => {
      queueMs = performance.now() - queued;
      return this.predictor.predictImages([
        { source: buffer, name: fileName, ...(query.scale ? { scale: query.scale } : {}) },
      ]);
    });
    if (!result) throw new PathotypeError('ERR_INTERNAL', 'no prediction came back');
    const id = this.records.newId();
    let imageFile: string | null = null;
    if (this.limits.keepImages) {
      imageFile = `${id}.${probe.format === 'jpeg' ? 'jpg' : probe.format === 'tiff' ? 'tif' : probe.format}`;
      const target = path.join(this.records.uploadsDir, imageFile);
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
      client: {
        address: request.ip,
        userAgent: request.headers['user-agent'] ?? '',
        keyId: request.keyId,
      },
      imageFile,
    };
    await this.records.insert(record);
    return record;
  }

  async find(id: string): Promise<PredictionRecord> {
    const record = await this.records.get(id);
    if (!record) throw new PathotypeError('ERR_NOT_FOUND', `no prediction ${id}`);
    return record;
  }

  /** The kept image, at the size the model saw it. */
  async imageOf(record: PredictionRecord): Promise<RgbImage> {
    const file = this.records.imagePath(record);
    if (!file) throw new PathotypeError('ERR_NOT_FOUND', `the image of prediction ${record.id} was not kept`);
    return decodeRgb(await readFile(file), {
      width: record.result.grid.width,
      height: record.result.grid.height,
      maxPixels: this.limits.maxPixels,
    });
  }
}

async function readUpload(
  request: FastifyRequest,
  filename: string | undefined,
): Promise<{ buffer: Buffer; fileName: string }> {
  if (request.isMultipart()) {
    const file = await request.file();
    if (!file)
      throw new PathotypeError(
        'ERR_NO_FILE',
        "the form has no file: send the image in a field named 'image'",
      );
    const buffer = await file.toBuffer();
    return { buffer, fileName: path.basename(file.filename || 'upload') };
  }
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0) {
    throw new PathotypeError(
      'ERR_NO_FILE',
      'send the image as multipart/form-data (field image) or as a raw image/* body',
    );
  }
  const header = request.headers['x-file-name'];
  const name = filename ?? (typeof header === 'string' ? header : undefined) ?? 'upload';
  return { buffer: body, fileName: path.basename(name) };
}
