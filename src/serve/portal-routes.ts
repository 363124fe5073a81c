/** The pathologist's portal: upload page, result pages, history, and the images they show. */
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { encodePng } from '../image/image-io.js';
import { overlayPng } from '../predict/heatmap.js';
import {
  fieldViewerPage,
  historyPage,
  resultPage,
  slideListPage,
  slideViewerPage,
  uploadPage,
  type ViewedSlide,
} from './portal.js';
import type { SlideJob } from '../store/slide-jobs.js';
import { CASES_QUERY, ID_PARAMS, UPLOAD_CONSUMES, UPLOAD_QUERY } from './schemas.js';
import { slideImageRoutes } from './slides-api.js';
import { clientOf, readImageUpload } from './uploads.js';

function viewed(job: SlideJob): ViewedSlide {
  return {
    id: job.id,
    fileName: job.fileName,
    status: job.status,
    progress: job.progress,
    error: job.error,
    result: job.summary?.result ?? null,
  };
}
const HISTORY_PAGE_SIZE = 20;

function html(reply: FastifyReply, body: string): FastifyReply {
  return reply.type('text/html; charset=utf-8').send(body);
}

export function portalRoutes(app: FastifyInstance): void {
  const portal = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const cached = 'private, max-age=86400';
  portal.get('/', { schema: { hide: true } }, (_request, reply) => html(reply, uploadPage(service.manifest)));
  portal.post(
    '/portal/predictions',
    { schema: { hide: true, consumes: UPLOAD_CONSUMES, querystring: UPLOAD_QUERY } },
    async (request, reply) => {
      const record = await service.predict(await readImageUpload(request, request.query), clientOf(request));
      return reply.code(201).send({ id: record.id, predicted: record.result.predicted });
    },
  );
  portal.get(
    '/cases',
    {
      schema: {
        hide: true,
        querystring: CASES_QUERY,
      },
    },
    async (request, reply) => {
      const { page, q } = request.query;
      const { total, items } = await service.store.predictions.list({
        limit: HISTORY_PAGE_SIZE,
        offset: (page - 1) * HISTORY_PAGE_SIZE,
        ...(q ? { query: q } : {}),
      });
      return html(reply, historyPage(items, total, page, HISTORY_PAGE_SIZE, q));
    },
  );
  portal.get('/cases/:id', { schema: { hide: true, params: ID_PARAMS } }, async (request, reply) => {
    const record = await service.find(request.params.id);
    return html(
      reply,
      resultPage(record, service.manifest, service.store.predictions.imagePath(record) !== null),
    );
  });
  portal.get(
    '/cases/:id/image.png',
    { schema: { hide: true, params: ID_PARAMS } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      const png = await encodePng(await service.imageOf(record));
      return reply.type('image/png').header('cache-control', cached).send(png);
    },
  );
  portal.get('/slides', { schema: { hide: true } }, async (_request, reply) =>
    html(reply, slideListPage((await service.slides.list(50, 0)).items.map(viewed))),
  );
  portal.get('/slides/:id', { schema: { hide: true, params: ID_PARAMS } }, async (request, reply) =>
    html(reply, slideViewerPage(viewed(await service.findSlideJob(request.params.id)), service.manifest)),
  );
  portal.get('/cases/:id/viewer', { schema: { hide: true, params: ID_PARAMS } }, async (request, reply) => {
    const record = await service.find(request.params.id);
    service.imageFileOf(record);
    return html(reply, fieldViewerPage(record, service.manifest));
  });
  slideImageRoutes(app, { hide: true });
  portal.get(
    '/cases/:id/overlay.png',
    { schema: { hide: true, params: ID_PARAMS } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      return reply
        .type('image/png')
        .header('cache-control', cached)
        .send(await overlayPng(record.result.grid));
    },
  );
}
