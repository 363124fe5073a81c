/** The REST API for slide viewers and scripts, under /api/v1, behind API keys once any exist. */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { heatmapPng } from '../predict/heatmap.js';
import { apiKeyHook } from './auth.js';
import {
  ERROR_SCHEMA,
  ID_PARAMS,
  PAGE_PROPERTIES,
  PREDICTION_SCHEMA,
  publicPrediction,
  UPLOAD_CONSUMES,
  UPLOAD_QUERY,
} from './schemas.js';

const MODEL_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    version: { type: 'integer' },
    architecture: { type: 'string' },
    classes: { type: 'array', items: { type: 'string' } },
    patchSize: { type: 'integer' },
    targetScale: { type: ['number', 'null'] },
    normalisation: { type: 'string' },
    createdAt: { type: 'string' },
    syntheticWeights: { type: 'boolean' },
    metrics: {
      type: 'object',
      additionalProperties: true,
      description: 'crossValidation: the expected accuracy on new patients, with its interval',
    },
    calibration: {
      type: ['object', 'null'],
      properties: {
        temperature: { type: 'number' },
        threshold: { type: 'number', description: 'above 1: the model answers no image' },
        target: { type: 'number' },
      },
    },
  },
} as const;

export function restApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  api.addHook('onRequest', apiKeyHook(service.records));
  api.post(
    '/predictions',
    {
      schema: {
        summary: 'Classify an image (multipart field "image", or a raw image body)',
        tags: ['predictions'],
        security: [{ apiKey: [] }],
        consumes: UPLOAD_CONSUMES,
        querystring: UPLOAD_QUERY,
        response: { 201: PREDICTION_SCHEMA, '4xx': ERROR_SCHEMA, 503: ERROR_SCHEMA },
      },
    },
    async (request, reply) =>
      reply.code(201).send(publicPrediction(await service.predict(request, request.query))),
  );
  api.get(
    '/predictions',
    {
      schema: {
        summary: 'Past predictions, newest first',
        tags: ['predictions'],
        security: [{ apiKey: [] }],
        querystring: {
          type: 'object',
          properties: {
            ...PAGE_PROPERTIES,
            q: { type: 'string', maxLength: 200 },
          },
          required: ['limit', 'offset'],
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: { total: { type: 'integer' }, items: { type: 'array', items: PREDICTION_SCHEMA } },
          },
          '4xx': ERROR_SCHEMA,
        },
      },
    },
    async (request) => {
      const { limit, offset, q } = request.query;
      const { total, items } = await service.records.list({ limit, offset, ...(q ? { query: q } : {}) });
      return { total, items: items.map(publicPrediction) };
    },
  );
  api.get(
    '/predictions/:id',
    {
      schema: {
        summary: 'One prediction',
        tags: ['predictions'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        response: { 200: PREDICTION_SCHEMA, '4xx': ERROR_SCHEMA },
      },
    },
    async (request) => publicPrediction(await service.find(request.params.id)),
  );
  api.get(
    '/predictions/:id/heatmap.png',
    {
      schema: {
        summary: 'The image with its patch heatmap (PNG)',
        tags: ['predictions'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        produces: ['image/png'],
        response: { 200: { description: 'the image with its heatmap, PNG' }, '4xx': ERROR_SCHEMA },
      },
    },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      return reply
        .type('image/png')
        .send(await heatmapPng(await service.imageOf(record), record.result.grid));
    },
  );
  api.get(
    '/models',
    {
      schema: {
        summary: 'The model this server runs',
        tags: ['models'],
        security: [{ apiKey: [] }],
        response: { 200: { type: 'array', items: MODEL_SCHEMA }, '4xx': ERROR_SCHEMA },
      },
    },
    () => {
      const m = service.manifest;
      return [
        {
          id: service.modelId,
          name: m.name,
          version: m.version,
          architecture: m.spec.name,
          classes: m.classes,
          patchSize: m.preprocess.tiles.patchSize,
          targetScale: m.preprocess.targetScale,
          normalisation: m.preprocess.normaliser.method,
          createdAt: m.createdAt,
          syntheticWeights: m.syntheticWeights ?? false,
          metrics: m.metrics,
          calibration: m.calibration ? { ...m.calibration } : null,
        },
      ];
    },
  );
}
