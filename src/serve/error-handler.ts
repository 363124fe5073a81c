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
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    const code =
      fastifyError.statusCode === 413
        ? 'ERR_TOO_LARGE'
        : fastifyError.statusCode === 429
          ? 'ERR_RATE_LIMITED'
          : (fastifyError.code ?? 'ERR_REQUEST');
    return { status: fastifyError.statusCode, code, message: fastifyError.message ?? 'bad request' };
  }
  return describeCode('ERR_INTERNAL', 'internal error');
}

function errorHandling(app: FastifyInstance): void {
  app.setErrorHandler((error, request, reply) => {
    const { status, code, message } = describeError(error);
    if (status >= 500 && status !== 503) request.log.error(error);
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
