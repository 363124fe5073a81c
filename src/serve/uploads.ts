/**
 * The HTTP side of an upload: what the request carries (a multipart field or a raw body, its
 * name, who sent it), turned into the plain values the service takes.
 */
import path from 'node:path';

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
  const record = await service.predict(
    { ...(await readImageUpload(request, query)), ...(query.model ? { model: query.model } : {}) },
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

/** The image of a multipart form (its one file) or of a raw image/* body. */
export async function readImageUpload(
  request: FastifyRequest,
  query: { filename?: string; scale?: number },
): Promise<ImageUpload> {
  const scale = query.scale ? { scale: query.scale } : {};
  if (request.isMultipart()) {
    checkMultipart(request);
    const file = await request.file();
    if (!file)
      throw new PathotypeError(
        'ERR_NO_FILE',
        "the form has no file: send the image in a field named 'image'",
      );
    return { buffer: await file.toBuffer(), fileName: fileNameOf(file.filename || 'upload'), ...scale };
  }
  const body = request.body;
  if (!Buffer.isBuffer(body) || body.length === 0)
    throw new PathotypeError(
      'ERR_NO_FILE',
      'send the image as multipart/form-data (field image) or as a raw image/* body',
    );
  const header = request.headers['x-file-name'];
  const name = query.filename ?? (typeof header === 'string' ? header : undefined) ?? 'upload';
  return { buffer: body, fileName: fileNameOf(name), ...scale };
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
