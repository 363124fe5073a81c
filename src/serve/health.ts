/** Liveness and readiness for load balancers and orchestrators, and the OpenAPI document. */
import type { FastifyInstance } from 'fastify';

import { ERROR_CODES } from '../errors.js';
import { ERROR_SCHEMA } from './schemas.js';

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
    (_request, reply) => {
      const { queue } = service;
      if (queue.full)
        return reply
          .code(ERROR_CODES.ERR_BUSY.status)
          .header('retry-after', '2')
          .send({ error: { code: 'ERR_BUSY', message: 'the inference queue is full' } });
      return { status: 'ready', model: service.modelId, running: queue.running, waiting: queue.waiting };
    },
  );
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());
}
