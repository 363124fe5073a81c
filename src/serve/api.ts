/** The REST API for predictions and the model, under /api/v1 (access: serve/access.ts). */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { estimateLabel } from '../evaluate/cross-validation.js';
import { heatmapPng } from '../predict/heatmap.js';
import { mppOf } from '../image/preprocess.js';
import { architectureOf } from '../model/package.js';
import {
  ERROR_SCHEMA,
  ID_PARAMS,
  listOf,
  MODEL_SCHEMA,
  PREDICTION_LIST_QUERY,
  PREDICTION_SCHEMA,
  publicPrediction,
  UPLOAD_CONSUMES,
  UPLOAD_QUERY,
} from './schemas.js';
import { predictUpload } from './uploads.js';
import { refuseWhenBusy } from './inference-limiter.js';

export function restApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
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
      config: { access: 'pathologist', audit: 'prediction.create' },
      // A full queue answers 503 before the body is read, not after a large upload arrived.
      onRequest: refuseWhenBusy(service),
    },
    async (request, reply) => {
      const record = await predictUpload(service, request, reply, request.query);
      return reply.code(201).send(publicPrediction(record));
    },
  );
  api.get(
    '/predictions',
    {
      schema: {
        summary: 'Past predictions, newest first',
        tags: ['predictions'],
        security: [{ apiKey: [] }],
        querystring: PREDICTION_LIST_QUERY,
        response: { 200: listOf(PREDICTION_SCHEMA), '4xx': ERROR_SCHEMA },
      },
      config: { audit: 'predictions.list' },
    },
    async (request) => {
      const { limit, offset, q } = request.query;
      const { total, items } = await service.store.predictions.list({
        limit,
        offset,
        ...(q ? { query: q } : {}),
      });
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
      config: { audit: 'prediction.read' },
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
      config: { audit: 'heatmap.read' },
    },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      return reply
        .type('image/png')
        .send(await heatmapPng(await service.imageOf(record), record.result.grid));
    },
  );
  modelRoute(app);
}

/** What a package's cross-validated figures estimate, from its metrics (older packages: one group per image says it). */
function crossValidationEstimate(metrics: Record<string, unknown>): string | null {
  const cv = metrics.crossValidation as
    { splitByImage?: boolean; groups?: number; images?: number } | undefined;
  if (!cv) return null;
  return estimateLabel(cv.splitByImage ?? cv.groups === cv.images);
}

/** The versions this server holds (one active per name), with their cross-validated figures and calibration. */
function modelRoute(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  api.get(
    '/models',
    {
      schema: {
        summary: 'The model versions this server holds; one version of each name is active and answers',
        tags: ['models'],
        security: [{ apiKey: [] }],
        response: { 200: { type: 'array', items: MODEL_SCHEMA }, '4xx': ERROR_SCHEMA },
      },
    },
    async () => {
      await service.models.refresh();
      return service.models.all().map(({ id, predictor }) => {
        const m = predictor.manifest;
        return {
          id,
          name: m.name,
          version: m.version,
          active: service.models.isActive(id),
          architecture: architectureOf(m),
          classes: m.classes,
          patchSize: m.preprocess.tiles.patchSize,
          mpp: mppOf(m.preprocess),
          targetScale: m.preprocess.targetScale,
          normalisation: m.preprocess.normaliser.method,
          createdAt: m.createdAt,
          syntheticWeights: m.syntheticWeights ?? false,
          metrics: m.metrics,
          estimate: crossValidationEstimate(m.metrics),
          calibration: m.calibration ? { ...m.calibration } : null,
          reference: m.reference
            ? {
                images: m.reference.atypicality.images,
                patients: m.reference.atypicality.patients,
                unit: m.reference.atypicality.unit ?? 'images',
              }
            : null,
        };
      });
    },
  );
}
