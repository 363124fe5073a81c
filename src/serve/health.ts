/** Liveness and readiness for load balancers and orchestrators, and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';

import { ERROR_SCHEMA } from './schemas.js';
import { QueueFullError } from './inference-limiter.js';

export function healthRoutes(app: FastifyInstance): void {
  const service = app.pathotype;
  app.get(
    '/healthz',
    {
      schema: {
        summary: 'The process is up',
        tags: ['health'],
        response: { 200: { type: 'object', properties: { status: { type: 'string' } } } },
      },
    },
    () => ({ status: 'ok' }),
  );
  app.get(
    '/readyz',
    {
      schema: {
        summary: 'Ready to predict: model loaded and the queue not full',
        tags: ['health'],
        response: {
          200: {
            type: 'object',
            properties: {
              status: { type: 'string' },
              model: { type: 'string' },
              running: { type: 'integer' },
              waiting: { type: 'integer' },
            },
          },
          503: ERROR_SCHEMA,
        },
      },
    },
    () => {
      const { limiter } = service;
      // The error handler gives the busy answer its status and Retry-After, as for a refused upload.
      if (limiter.full) throw new QueueFullError();
      return { status: 'ready', model: service.modelId, running: limiter.running, waiting: limiter.waiting };
    },
  );
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
}
