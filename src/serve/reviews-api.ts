/**
 * Reviews of served cases under /api/v1: a pathologist's diagnosis of an image prediction or a
 * slide, the patient it belongs to and a comment, and the list of reviews (JSON or CSV) that
 * `pathotype reviews export` turns into a labelled image set. Recording needs the pathologist
 * role (viewers 403); session requests carry the CSRF token as uploads do (serve/access.ts).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { PathotypeError } from '../errors.js';
import { OTHER_LABEL, reviewsCsv, type CaseKind, type Review } from '../store/reviews.js';
import { ERROR_SCHEMA, ID_PARAMS } from './schemas.js';
import type { PredictionService } from './service.js';
import { principalOf } from './uploads.js';
import { visibleList } from './review-views.js';

const TEXT = { type: 'string', maxLength: 2000 } as const;
/** Patient ids become file names in an export: letters, digits, dot, dash. */
const PATIENT = { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9.-]{0,63}$' } as const;

export const REVIEW_BODY = {
  type: 'object',
  properties: {
    label: {
      type: 'string',
      minLength: 1,
      maxLength: 100,
      description: `a model class, or '${OTHER_LABEL}'`,
    },
    other: { ...TEXT, description: `what the diagnosis is, when the label is '${OTHER_LABEL}'` },
    patient: { ...PATIENT, description: 'the patient id (letters, digits, . and -)' },
    comment: TEXT,
  },
  required: ['label'],
  additionalProperties: false,
} as const;

const NULLABLE_TEXT = { type: ['string', 'null'] } as const;

export const REVIEW_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    createdAt: { type: 'string' },
    caseKind: { enum: ['prediction', 'slide'] },
    caseId: { type: 'string' },
    reviewer: { type: 'string' },
    label: { type: 'string' },
    otherText: NULLABLE_TEXT,
    patient: NULLABLE_TEXT,
    comment: { type: 'string' },
    modelId: { type: 'string' },
    predicted: NULLABLE_TEXT,
    supersedes: { ...NULLABLE_TEXT, description: "this reader's earlier review of the case" },
  },
  required: ['id', 'createdAt', 'caseKind', 'caseId', 'reviewer', 'label', 'comment', 'modelId'],
} as const;

const LIST_QUERY = {
  type: 'object',
  properties: {
    since: { type: 'string', format: 'date-time' },
    label: { type: 'string', maxLength: 100 },
    reviewer: { type: 'string', maxLength: 200 },
    case: {
      type: 'string',
      pattern: '^[0-9a-f-]{36}$',
      description: 'one case (a prediction or a slide job)',
    },
    history: { type: 'boolean', default: false, description: 'superseded reviews too' },
  },
  additionalProperties: false,
} as const;

export interface ReviewBody {
  label: string;
  other?: string;
  patient?: string;
  comment?: string;
}

/** The label must be one the model knows, or 'other' with its text. */
function checkLabel(body: ReviewBody, classes: readonly string[]): void {
  if (body.label === OTHER_LABEL) {
    if (!body.other?.trim())
      throw new PathotypeError('ERR_VALIDATION', `a '${OTHER_LABEL}' review needs its diagnosis in 'other'`);
    return;
  }
  if (!classes.includes(body.label))
    throw new PathotypeError(
      'ERR_VALIDATION',
      `'${body.label}' is not one of the model's classes (${classes.join(', ')}) nor '${OTHER_LABEL}'`,
    );
}

/** The case as the server recorded it: which model answered and what it said. */
async function caseOf(
  service: PredictionService,
  kind: CaseKind,
  id: string,
): Promise<{ modelId: string; predicted: string | null }> {
  if (kind === 'prediction') {
    const record = await service.find(id);
    return { modelId: record.modelId, predicted: record.result.predicted };
  }
  const job = await service.findSlideJob(id);
  if (job.status !== 'done')
    throw new PathotypeError('ERR_NOT_READY', `slide job ${id} is ${job.status}: review it once it is done`);
  return { modelId: job.modelId, predicted: job.summary?.result.predicted ?? null };
}

async function recordReview(
  service: PredictionService,
  request: FastifyRequest,
  kind: CaseKind,
  id: string,
  body: ReviewBody,
): Promise<Review> {
  const known = await caseOf(service, kind, id);
  // The classes of the version that answered the case: a later version may know others.
  checkLabel(body, (service.manifestOf(known.modelId) ?? service.manifest).classes);
  const principal = principalOf(request);
  return service.store.reviews.add({
    caseKind: kind,
    caseId: id,
    // A key acting for a user reviews as that user: one reader, whichever way they sent it.
    reviewer: principal.owner.name,
    reviewerId: principal.owner.id,
    label: body.label,
    otherText: body.label === OTHER_LABEL ? (body.other ?? '').trim() : null,
    patient: body.patient ?? null,
    comment: body.comment ?? '',
    ...known,
  });
}

export function reviewsApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  for (const [kind, prefix] of [
    ['prediction', 'predictions'],
    ['slide', 'slides'],
  ] as const) {
    api.post(
      `/${prefix}/:id/review`,
      {
        schema: {
          summary: `Record a pathologist's diagnosis of a ${kind === 'slide' ? 'finished slide job' : 'prediction'}`,
          tags: ['reviews'],
          security: [{ apiKey: [] }],
          params: ID_PARAMS,
          body: REVIEW_BODY,
          response: { 201: REVIEW_SCHEMA, '4xx': ERROR_SCHEMA },
        },
        config: { access: 'pathologist', audit: `review.create.${kind}` as const },
      },
      async (request, reply) =>
        reply.code(201).send(await recordReview(service, request, kind, request.params.id, request.body)),
    );
  }
  // Under double reading, what a reader may not see yet is left out (serve/review-views.ts).
  const list = async (
    request: FastifyRequest,
    query: { since?: string; label?: string; reviewer?: string; case?: string; history?: boolean },
  ) =>
    visibleList(
      service.store,
      request.principal,
      await service.store.reviews.list({
        ...(query.since ? { since: new Date(query.since).toISOString() } : {}),
        ...(query.label ? { label: query.label } : {}),
        ...(query.reviewer ? { reviewer: query.reviewer } : {}),
        ...(query.case ? { caseId: query.case } : {}),
        history: query.history ?? false,
      }),
    );
  api.get(
    '/reviews',
    {
      schema: {
        summary:
          "Reviews, newest first: each reader's latest of each case (history=true: all); under double reading, another reader's review of a case only once it has its two readers",
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        querystring: LIST_QUERY,
        response: {
          200: { type: 'object', properties: { reviews: { type: 'array', items: REVIEW_SCHEMA } } },
          '4xx': ERROR_SCHEMA,
        },
      },
      config: { audit: 'reviews.list' },
    },
    async (request) => ({ reviews: await list(request, request.query) }),
  );
  api.get(
    '/reviews.csv',
    {
      schema: {
        summary: 'The same reviews as CSV',
        tags: ['reviews'],
        security: [{ apiKey: [] }],
        querystring: LIST_QUERY,
        produces: ['text/csv'],
        response: { 200: { type: 'string', description: 'CSV, one review a line' }, '4xx': ERROR_SCHEMA },
      },
      config: { audit: 'reviews.list' },
    },
    async (request, reply) =>
      reply.type('text/csv; charset=utf-8').send(reviewsCsv(await list(request, request.query))),
  );
}
