/**
 * Errors in one shape, { error: { code, message } }, with the status the error catalogue gives
 * each code; a browser asking for a page gets an HTML error page instead. Registered without
 * encapsulation, so it covers every route.
 */
import type { FastifyError, FastifyInstance } from 'fastify';
import fp from 'fastify-plugin';

import { ERROR_CODES, PathotypeError, type ErrorCode } from '../errors.js';
import { ANONYMOUS_PAGE, errorPage } from './portal.js';

/** Fastify's and its plugins' own codes, in the catalogue's terms. */
const FASTIFY_CODES: Record<string, ErrorCode> = {
  FST_REQ_FILE_TOO_LARGE: 'ERR_TOO_LARGE',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'ERR_REQUEST',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'ERR_UNSUPPORTED_MEDIA',
  FST_CSRF_INVALID_TOKEN: 'ERR_CSRF',
  FST_CSRF_MISSING_SECRET: 'ERR_CSRF',
};

interface DescribedError {
  status: number;
  code: string;
  message: string;
}

function describeCode(code: ErrorCode, message: string): DescribedError {
  return { status: ERROR_CODES[code].status, code, message };
}

/** Any other client error of Fastify or a plugin, by its status, so every code is the catalogue's. */
const BY_STATUS: Record<number, ErrorCode> = {
  400: 'ERR_REQUEST',
  404: 'ERR_NOT_FOUND',
  406: 'ERR_UNSUPPORTED_MEDIA',
  408: 'ERR_TIMEOUT',
  413: 'ERR_TOO_LARGE',
  415: 'ERR_UNSUPPORTED_MEDIA',
  429: 'ERR_RATE_LIMITED',
  431: 'ERR_HEADERS_TOO_LARGE',
};

/** A double-quoted string in a message: the sender's own input, quoted as sent (JSON escapes). */
const QUOTED = /("(?:[^"\\]|\\.)*")/;

/**
 * Folders of this machine do not leave it: an absolute path in a message is cut to its file
 * name. What the message quotes is the sender's own input and stays as it was sent.
 */
export function withoutServerPaths(message: string): string {
  return message
    .split(QUOTED)
    .map((part, i) =>
      i % 2 === 1
        ? part
        : part.replace(/(?:\/[^/\s'"`:,;()]+){2,}/g, (full) => full.slice(full.lastIndexOf('/') + 1)),
    )
    .join('');
}

function describeError(error: unknown): DescribedError {
  if (error instanceof PathotypeError)
    return { status: error.status, code: error.code, message: error.message };
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation)
    return describeCode('ERR_VALIDATION', fastifyError.message ?? 'invalid request');
  const known = FASTIFY_CODES[fastifyError.code ?? ''];
  if (known)
    return describeCode(
      known,
      known === 'ERR_CSRF' ? 'the CSRF token is missing or wrong' : (fastifyError.message ?? ''),
    );
  const status = fastifyError.statusCode;
  if (typeof status === 'number' && status < 500)
    return {
      status,
      code: BY_STATUS[status] ?? 'ERR_REQUEST',
      message: fastifyError.message ?? 'bad request',
    };
  if (status === 503) return describeCode('ERR_BUSY', fastifyError.message ?? 'the server is busy');
  return describeCode('ERR_INTERNAL', 'internal error');
}

/** A 500's message names its request, so the operator finds it in the log the server wrote. */
function withRequestId(described: DescribedError, requestId: string): string {
  return described.code === 'ERR_INTERNAL'
    ? `${described.message} (request ${requestId})`
    : described.message;
}

function errorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const described = describeError(error);
    const { status, code } = described;
    const message = withoutServerPaths(withRequestId(described, request.id));
    // Unexpected failures are logged even without --log: an operator must see them.
    if (status >= 500 && status !== 503) {
      request.log.error(error);
      // Without --log Fastify's logger has no level at all (not 'silent'): it writes nothing.
      if (request.log.level === undefined || request.log.level === 'silent')
        process.stderr.write(
          `pathotype: request ${request.id}: ${request.method} ${request.url.split('?')[0] ?? ''}: ${String((error as Error).stack ?? error)}\n`,
        );
    }
    if (code === 'ERR_BUSY') void reply.header('retry-after', '2');
    const wantsHtml =
      !request.url.startsWith('/api/') &&
      !request.url.startsWith('/portal/') &&
      (request.headers.accept ?? '').includes('text/html');
    if (wantsHtml)
      return reply
        .code(status)
        .type('text/html')
        .send(errorPage(ANONYMOUS_PAGE, status, message));
    return reply.code(status).send({ error: { code, message } });
  });
  app.setNotFoundHandler((request, reply) => {
    const { status, code, message } = describeCode(
      'ERR_NOT_FOUND',
      `no route ${request.method} ${request.url.split('?')[0] ?? ''}`,
    );
    if ((request.headers.accept ?? '').includes('text/html') && !request.url.startsWith('/api/')) {
      return reply
        .code(status)
        .type('text/html')
        .send(errorPage(ANONYMOUS_PAGE, status, message));
    }
    return reply.code(status).send({ error: { code, message } });
  });
}

export default fp(errorHandling, { name: 'pathotype-errors' });
