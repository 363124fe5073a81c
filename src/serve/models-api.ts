/**
 * Model versions under /api/v1/models/{name}: compare a challenger with the active version on
 * the reviewed cases, promote it (or roll back to an earlier version: the same action), their
 * histories, and each version's drift. Admins only, but the promotion history (which version
 * answered when), which anyone signed in may read; every action is audited.
 */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { challengerOf, compareWithChampion, promote } from './challenger.js';
import { driftReport } from './drift.js';
import { ERROR_SCHEMA } from './schemas.js';
import { principalOf } from './uploads.js';

export const NAME_PARAMS = {
  type: 'object',
  properties: { name: { type: 'string', pattern: '^[A-Za-z0-9._-]{1,100}$' } },
  required: ['name'],
} as const;

const VERSION_BODY = {
  type: 'object',
  properties: { version: { type: 'integer', minimum: 1 } },
  required: ['version'],
  additionalProperties: false,
} as const;

export const DRIFT_QUERY = {
  type: 'object',
  properties: {
    model: {
      type: 'string',
      pattern: '^[A-Za-z0-9._-]{1,100}@[0-9]{1,9}$',
      description: 'name@version; default: the active version',
    },
    weeks: { type: 'integer', minimum: 1, maximum: 104, default: 12 },
  },
  required: ['weeks'],
  additionalProperties: false,
} as const;

const OPEN_RECORD = { type: 'object', additionalProperties: true } as const;

export function modelsApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const tags = ['models'];
  const security = [{ apiKey: [] }];
  api.post(
    '/models/:name/compare',
    {
      schema: {
        summary:
          'Compare a version with the active one on the reviewed cases neither trained on (paired bootstrap over patients; admins)',
        tags,
        security,
        params: NAME_PARAMS,
        body: VERSION_BODY,
        response: { 201: OPEN_RECORD, '4xx': ERROR_SCHEMA, 503: ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'model.compare' },
    },
    async (request, reply) => {
      const challenger = challengerOf(service, request.params.name, request.body.version);
      return reply.code(201).send(await compareWithChampion(service, challenger, principalOf(request).name));
    },
  );
  api.get(
    '/models/:name/comparisons',
    {
      schema: {
        summary: "A name's comparisons, newest first (admins)",
        tags,
        security,
        params: NAME_PARAMS,
        response: { 200: { type: 'array', items: OPEN_RECORD }, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'models.read' },
    },
    (request) => service.store.models.comparisons(request.params.name),
  );
  api.post(
    '/models/:name/promote',
    {
      schema: {
        summary:
          'Make a version the active one: a challenger after its comparison, or an earlier version back (rollback; admins)',
        tags,
        security,
        params: NAME_PARAMS,
        body: VERSION_BODY,
        response: { 200: OPEN_RECORD, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'model.promote' },
    },
    async (request) =>
      promote(
        service,
        challengerOf(service, request.params.name, request.body.version),
        principalOf(request).name,
      ),
  );
  api.get(
    '/models/:name/promotions',
    {
      schema: {
        summary: 'Which version of a name was active since when, and who made it so, newest first',
        tags,
        security,
        params: NAME_PARAMS,
        response: { 200: { type: 'array', items: OPEN_RECORD }, '4xx': ERROR_SCHEMA },
      },
    },
    (request) => service.store.models.history(request.params.name),
  );
  api.get(
    '/drift',
    {
      schema: {
        summary:
          "Weekly share of inputs unlike the training data, and their scale, stain and focus against the training images' (admins)",
        tags,
        security,
        querystring: DRIFT_QUERY,
        response: { 200: OPEN_RECORD, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'drift.read' },
    },
    async (request) => {
      await service.models.refresh();
      const modelId = request.query.model ?? service.modelId;
      return driftReport(service.store, modelId, service.manifestOf(modelId), request.query.weeks);
    },
  );
}
