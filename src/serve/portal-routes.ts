/** The pathologist's portal: upload page, result pages, history, and the images they show. */
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type {} from '@fastify/csrf-protection';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import type { ModelManifest } from '../model/package.js';
import { encodePng } from '../image/image-io.js';
import { overlayPng } from '../predict/heatmap.js';
import { ANONYMOUS_PAGE, FAVICON, historyPage, resultPage, uploadPage, type PageContext } from './portal.js';
import { fieldViewerPage, slideListPage, slideViewerPage, type ViewedSlide } from './portal-slides.js';
import type { SlideJob } from '../store/slide-jobs.js';
import { shownJobError, CASES_QUERY, ID_PARAMS, UPLOAD_CONSUMES, UPLOAD_QUERY } from './schemas.js';
import { slideImageRoutes } from './slides-api.js';
import { predictUpload, principalOf } from './uploads.js';
import { reviewSection } from './review-pages.js';
import { caseReviewView } from './review-views.js';
import { refuseWhenBusy } from './inference-limiter.js';

function viewed(job: SlideJob): ViewedSlide {
  return {
    id: job.id,
    fileName: job.fileName,
    status: job.status,
    progress: job.progress,
    error: shownJobError(job),
    result: job.summary?.result ?? null,
    atypicality: job.summary?.atypicality ?? null,
    modelId: job.modelId,
  };
}
const HISTORY_PAGE_SIZE = 20;

/** What an upload may be sent to: every name's active version, the default first. */
function modelChoices(service: FastifyInstance['pathotype']): ModelManifest[] {
  return service.models.choices().map((m) => m.predictor.manifest);
}

/** Pages hold patient data: never kept by the browser, so the back button after sign-out asks again. */
export function html(reply: FastifyReply, body: string): FastifyReply {
  return reply.type('text/html; charset=utf-8').header('cache-control', 'no-store').send(body);
}

/** The signed-in user, and a CSRF token for the page's forms and scripts. */
export function pageContext(request: FastifyRequest, reply: FastifyReply): PageContext {
  const principal = request.principal;
  if (principal?.kind !== 'user') return ANONYMOUS_PAGE;
  return { user: { name: principal.name, role: principal.role }, csrfToken: reply.generateCsrf() };
}

export function portalRoutes(app: FastifyInstance): void {
  const portal = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const cached = 'private, max-age=86400';
  // Browsers ask for /favicon.ico whatever the page names (open in OPEN_ROUTES).
  portal.get('/favicon.ico', { schema: { hide: true } }, (_request, reply) => reply.redirect(FAVICON, 301));
  portal.get('/', { schema: { hide: true } }, (request, reply) =>
    html(reply, uploadPage(pageContext(request, reply), modelChoices(service))),
  );
  portal.post(
    '/portal/predictions',
    {
      schema: { hide: true, consumes: UPLOAD_CONSUMES, querystring: UPLOAD_QUERY },
      config: { access: 'pathologist', audit: 'prediction.create' },
      // A full queue answers 503 before the body is read, not after a large upload arrived.
      onRequest: refuseWhenBusy(service),
    },
    async (request, reply) => {
      const record = await predictUpload(service, request, reply, request.query);
      return reply.code(201).send({ id: record.id, predicted: record.result.predicted });
    },
  );
  portal.get(
    '/cases',
    { schema: { hide: true, querystring: CASES_QUERY }, config: { audit: 'predictions.list' } },
    async (request, reply) => {
      const { page, q } = request.query;
      const { total, items } = await service.store.predictions.list({
        limit: HISTORY_PAGE_SIZE,
        offset: (page - 1) * HISTORY_PAGE_SIZE,
        ...(q ? { query: q } : {}),
      });
      return html(reply, historyPage(pageContext(request, reply), items, total, page, HISTORY_PAGE_SIZE, q));
    },
  );
  portal.get(
    '/cases/:id',
    { schema: { hide: true, params: ID_PARAMS }, config: { audit: 'prediction.read' } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      const hasImage = service.store.predictions.imagePath(record) !== null;
      const ctx = pageContext(request, reply);
      const manifest = service.manifestOf(record.modelId);
      const view = await caseReviewView(service.store, request.principal, 'prediction', record.id);
      const classes = (manifest ?? service.manifest).classes;
      const review = reviewSection(ctx, 'prediction', record.id, classes, view);
      return html(reply, resultPage(ctx, record, manifest, hasImage, review));
    },
  );
  portal.get(
    '/cases/:id/image.png',
    { schema: { hide: true, params: ID_PARAMS }, config: { audit: 'image.read' } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      const png = await encodePng(await service.imageOf(record));
      return reply.type('image/png').header('cache-control', cached).send(png);
    },
  );
  portal.get(
    '/cases/:id/overlay.png',
    { schema: { hide: true, params: ID_PARAMS }, config: { audit: 'heatmap.read' } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      return reply
        .type('image/png')
        .header('cache-control', cached)
        .send(await overlayPng(record.result.grid));
    },
  );
  portal.get(
    '/cases/:id/viewer',
    { schema: { hide: true, params: ID_PARAMS }, config: { audit: 'prediction.view' } },
    async (request, reply) => {
      const record = await service.find(request.params.id);
      service.imageFileOf(record);
      return html(
        reply,
        fieldViewerPage(
          pageContext(request, reply),
          record,
          service.manifestOf(record.modelId) ?? service.manifest,
        ),
      );
    },
  );
  slidePages(app);
}

/** The slide list, and a slide in the viewer with its images. */
function slidePages(app: FastifyInstance): void {
  const portal = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  portal.get(
    '/slides',
    { schema: { hide: true }, config: { audit: 'slides.list' } },
    async (request, reply) =>
      html(
        reply,
        slideListPage(
          pageContext(request, reply),
          (await service.slides.list(50, 0)).items.map(viewed),
          modelChoices(service),
        ),
      ),
  );
  portal.get(
    '/slides/:id',
    { schema: { hide: true, params: ID_PARAMS }, config: { audit: 'slide.view' } },
    async (request, reply) => {
      const job = await service.findSlideJob(request.params.id);
      const manifest = service.manifestOf(job.modelId);
      const ctx = pageContext(request, reply);
      const view = await caseReviewView(service.store, request.principal, 'slide', job.id);
      const classes = (manifest ?? service.manifest).classes;
      const reviews = reviewSection(ctx, 'slide', job.id, classes, view);
      return html(reply, slideViewerPage(ctx, viewed(job), manifest, service.manifest, reviews));
    },
  );
  portal.post(
    '/slides/:id/cancel',
    { schema: { hide: true, params: ID_PARAMS }, config: { access: 'pathologist', audit: 'slide.cancel' } },
    async (request, reply) => {
      await service.cancelSlide(request.params.id, principalOf(request));
      return reply.redirect(`/slides/${request.params.id}`, 303);
    },
  );
  slideImageRoutes(app, { hide: true });
}
