/**
 * The HTTP side of an upload: what the request carries (a multipart field or a raw body, its
 * name, who sent it), turned into the plain values the service takes.
 */
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream, rmSync } from 'node:fs';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

import type { FastifyReply, FastifyRequest } from 'fastify';

import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import type { Principal } from './access.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { Client, ImageUpload, PredictionService, SlideSubmission } from './service.js';

/** Who is asking, as the access rule found it (it runs before every handler). */
export function principalOf(request: FastifyRequest): Principal {
  if (!request.principal) throw new PathotypeError('ERR_UNAUTHORIZED', 'no principal on this request');
  return request.principal;
}

export function clientOf(request: FastifyRequest): Client {
  const principal = request.principal;
  return {
    address: request.ip,
    userAgent: (request.headers['user-agent'] ?? '').slice(0, 300),
    keyId: principal?.kind === 'key' ? principal.id : null,
    user: principal?.name ?? 'anonymous',
  };
}

/** Aborts when the client hangs up before its answer is sent: its work stops taking the engine. */
export function hangUpSignal(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.once('close', () => {
    if (!reply.raw.writableFinished) controller.abort('client gone');
  });
  return controller.signal;
}

/** A file name as sent, without its folders; refused when longer than LIMITS.fileNameLength. */
function fileNameOf(name: string): string {
  const base = path.basename(name);
  if (base.length > LIMITS.fileNameLength)
    throw new PathotypeError(
      'ERR_VALIDATION',
      `the file name is ${base.length} characters long; at most ${LIMITS.fileNameLength}`,
    );
  return base;
}

/** An upload route's work: read the image, predict (stopping if the client hangs up), note the case for the audit. */
export async function predictUpload(
  service: PredictionService,
  request: FastifyRequest,
  reply: FastifyReply,
  query: { filename?: string; scale?: number; model?: string },
): Promise<PredictionRecord> {
  const upload = await readImageUpload(
    request,
    query,
    service.store.predictions.uploadsDir,
    service.limits.maxBytes,
  );
  const record = await service.predict(
    { ...upload, ...(query.model ? { model: query.model } : {}) },
    clientOf(request),
    hangUpSignal(reply),
  );
  request.auditCase = record.id;
  return record;
}

/** A multipart body is read only with the boundary its Content-Type must name. */
function checkMultipart(request: FastifyRequest): void {
  if (!/;\s*boundary=/i.test(request.headers['content-type'] ?? ''))
    throw new PathotypeError(
      'ERR_REQUEST',
      'a multipart/form-data body needs a boundary in its Content-Type',
    );
}

/** An upload's body as it came in: on disk, never whole in memory. */
export interface ReceivedFile {
  /** The server's copy (`*.part` in the uploads folder), removed or kept by whoever takes it. */
  file: string;
  bytes: number;
  sha256: string;
}

/**
 * Streams an upload to a file in `dir`, hashing as it goes, refused (413) beyond `maxBytes`:
 * memory holds a stream's buffers whatever the upload's size.
 */
export async function receiveToFile(stream: Readable, dir: string, maxBytes: number): Promise<ReceivedFile> {
  const file = path.join(dir, `incoming-${randomUUID()}.part`);
  const hash = createHash('sha256');
  let bytes = 0;
  stream.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes > maxBytes) stream.destroy(tooLarge(maxBytes));
    else hash.update(chunk);
  });
  try {
    await pipeline(stream, createWriteStream(file));
  } catch (error) {
    rmSync(file, { force: true });
    throw error;
  }
  return { file, bytes, sha256: hash.digest('hex') };
}

function tooLarge(maxBytes: number): PathotypeError {
  return new PathotypeError(
    'ERR_TOO_LARGE',
    `the upload is larger than the ${(maxBytes / 2 ** 20).toFixed(0)} MiB this server accepts`,
  );
}

/**
 * The image of a multipart form (its one file) or of a raw image/* body (a stream: the raw
 * types' parser hands it on unread), streamed to a file in `dir`.
 */
export async function readImageUpload(
  request: FastifyRequest,
  query: { filename?: string; scale?: number },
  dir: string,
  maxBytes: number,
): Promise<ImageUpload> {
  const scale = query.scale ? { scale: query.scale } : {};
  if (request.isMultipart()) {
    checkMultipart(request);
    const part = await request.file();
    if (!part)
      throw new PathotypeError(
        'ERR_NO_FILE',
        "the form has no file: send the image in a field named 'image'",
      );
    const fileName = fileNameOf(part.filename || 'upload');
    const received = await receiveToFile(part.file, dir, maxBytes);
    if (part.file.truncated) {
      rmSync(received.file, { force: true });
      throw tooLarge(maxBytes);
    }
    return { ...received, fileName, ...scale };
  }
  // Refused before a byte is read when the sender says it is too large (a chunked body is counted).
  const declared = Number(request.headers['content-length'] ?? Number.NaN);
  if (declared > maxBytes) throw tooLarge(maxBytes);
  const body = request.body as Readable | undefined;
  const header = request.headers['x-file-name'];
  const name = query.filename ?? (typeof header === 'string' ? header : undefined) ?? 'upload';
  const fileName = fileNameOf(name);
  if (!body || typeof body.pipe !== 'function' || declared === 0)
    throw new PathotypeError(
      'ERR_NO_FILE',
      'send the image as multipart/form-data (field image) or as a raw image/* body',
    );
  const received = await receiveToFile(body, dir, maxBytes);
  if (received.bytes === 0) {
    rmSync(received.file, { force: true });
    throw new PathotypeError('ERR_NO_FILE', 'the request body is empty: send the image');
  }
  return { ...received, fileName, ...scale };
}

/** The JSON body naming a slide under the slide root (validated by the route's schema). */
export interface SlidePathBody {
  path: string;
}

/** A slide streamed in a multipart form, or the path a JSON body names. */
export async function readSlideSubmission(
  request: FastifyRequest,
  body: SlidePathBody | undefined,
  maxBytes: number,
): Promise<SlideSubmission> {
  if (request.isMultipart()) {
    checkMultipart(request);
    const part = await request.file({ limits: { fileSize: maxBytes, files: 1 } });
    if (!part)
      throw new PathotypeError(
        'ERR_NO_FILE',
        "the form has no file: send the slide in a field named 'slide'",
      );
    return {
      kind: 'upload',
      stream: part.file,
      fileName: fileNameOf(part.filename || 'slide.tif'),
      truncated: () => part.file.truncated,
    };
  }
  if (!body)
    throw new PathotypeError(
      'ERR_NO_FILE',
      'send the slide as multipart/form-data (field slide) or JSON {"path": "..."}',
    );
  return { kind: 'path', path: body.path };
}
