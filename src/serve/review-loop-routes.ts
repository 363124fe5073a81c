/**
 * The review loop's routes besides recording a review (reviews-api.ts): the review queue (page
 * and API, for those who may review), the deployment's reading rule (one reader or two
 * independent ones: a database setting, so every server of a deployment applies the same rule
 * and an admin changes it without a restart), and the agreement report (admins).
 */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { verdictHtml } from '../predict/verdict-text.js';
import { requiredReaders, setRequiredReaders } from '../store/review-cases.js';
import { agreementReport } from './agreement-report.js';
import { html, pageContext } from './portal-routes.js';
import { queuePage } from './review-loop-pages.js';
import { QUEUE_STATUSES, reviewQueue, type QueueFilter, type QueueItem } from './review-queue.js';
import { readerOf } from './review-views.js';
import { ERROR_SCHEMA, PAGE_PROPERTIES } from './schemas.js';
import type { PredictionService } from './service.js';

const DAY = /^\d{4}-\d{2}-\d{2}$/;

export const QUEUE_QUERY = {
  type: 'object',
  properties: {
    ...PAGE_PROPERTIES,
    model: {
      type: 'string',
      pattern: '^([A-Za-z0-9._-]{1,100}(@[0-9]{1,9})?)?$',
      description: 'a model name, or name@version',
    },
    since: { type: 'string', maxLength: 40, description: 'cases received at or after this ISO time or day' },
    until: {
      type: 'string',
      maxLength: 40,
      description: 'cases received before this ISO time, or up to this day',
    },
    status: { enum: QUEUE_STATUSES, default: 'needed' },
  },
  required: ['limit', 'offset', 'status'],
  additionalProperties: false,
} as const;

const QUEUE_ITEM = {
  type: 'object',
  properties: {
    caseKind: { enum: ['prediction', 'slide'] },
    caseId: { type: 'string' },
    createdAt: { type: 'string' },
    fileName: { type: 'string' },
    modelId: { type: 'string' },
    margin: {
      type: ['number', 'null'],
      description: "the model's top calibrated probability minus the next",
    },
    atypicality: { type: ['number', 'null'], description: "percentile of the training images' own scores" },
    unlike: { type: 'boolean' },
    status: { enum: ['unreviewed', 'second-reading', 'disagreement', 'settled'] },
    readers: { type: 'integer' },
  },
} as const;

const READERS_BODY = {
  type: 'object',
  properties: { readers: { enum: [1, 2] } },
  required: ['readers'],
  additionalProperties: false,
} as const;

/** A time of the query (an ISO time, or a day: `until` then means up to its end). */
function timeOf(value: string | undefined, end: boolean): string | undefined {
  if (!value) return undefined;
  const at = new Date(DAY.test(value) ? `${value}T00:00:00Z` : value);
  if (Number.isNaN(at.getTime())) return undefined;
  if (end && DAY.test(value)) at.setUTCDate(at.getUTCDate() + 1);
  return at.toISOString();
}

function filterOf(query: {
  model?: string;
  since?: string;
  until?: string;
  status: QueueFilter['status'];
  limit: number;
  offset: number;
}): QueueFilter {
  const since = timeOf(query.since, false);
  const until = timeOf(query.until, true);
  return {
    ...(query.model ? { model: query.model } : {}),
    ...(since ? { since } : {}),
    ...(until ? { until } : {}),
    status: query.status,
    limit: query.limit,
    offset: query.offset,
  };
}

/** Each item with its verdict line (the image's record; a slide's summary). */
async function withVerdicts(service: PredictionService, items: readonly QueueItem[]) {
  return Promise.all(
    items.map(async (item) => {
      if (item.caseKind === 'slide') {
        const job = await service.findSlideJob(item.caseId);
        return { item, verdict: job.summary ? verdictHtml(job.summary.result) : '' };
      }
      const record = await service.store.predictions.get(item.caseId);
      return { item, verdict: record ? verdictHtml(record.result) : '' };
    }),
  );
}

export function reviewLoopRoutes(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  api.get(
    '/api/v1/reviews/queue',
    {
      schema: {
        summary: 'Cases waiting for this reader, the most informative first (README: Review and retraining)',
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        querystring: QUEUE_QUERY,
        response: {
          200: {
            type: 'object',
            properties: { total: { type: 'integer' }, items: { type: 'array', items: QUEUE_ITEM } },
          },
          '4xx': ERROR_SCHEMA,
        },
      },
      config: { access: 'pathologist', audit: 'reviews.queue' },
    },
    (request) => reviewQueue(service.store, readerOf(request.principal), filterOf(request.query)),
  );
  api.get(
    '/reviews',
    {
      schema: { hide: true, querystring: QUEUE_QUERY },
      config: { access: 'pathologist', audit: 'reviews.queue' },
    },
    async (request, reply) => {
      const filter = filterOf({ ...request.query, limit: 50 });
      const queue = await reviewQueue(service.store, readerOf(request.principal), filter);
      const items = await withVerdicts(service, queue.items);
      return html(
        reply,
        queuePage(pageContext(request, reply), { total: queue.total, items }, filter, service.models.names()),
      );
    },
  );
  api.get(
    '/api/v1/reviews/settings',
    {
      schema: {
        summary: 'Readers each case needs: 1, or 2 independent ones',
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        response: { 200: READERS_BODY, '4xx': ERROR_SCHEMA },
      },
    },
    async () => ({ readers: await requiredReaders(service.store.db) }),
  );
  api.put(
    '/api/v1/reviews/settings',
    {
      schema: {
        summary: 'Require one reader, or two independent ones (admins)',
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        body: READERS_BODY,
        response: { 200: READERS_BODY, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'reviews.settings' },
    },
    async (request) => {
      await setRequiredReaders(service.store.db, request.body.readers);
      return { readers: request.body.readers };
    },
  );
  api.get(
    '/api/v1/reviews/agreement',
    {
      schema: {
        summary:
          "Cohen's kappa between readers and with the model, with 95% intervals over patients (admins)",
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        response: { 200: { type: 'object', additionalProperties: true }, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'admin', audit: 'reviews.agreement' },
    },
    () => agreementReport(service.store, service.manifest.classes),
  );
}
