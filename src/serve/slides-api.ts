/**
 * Slides over REST, under /api/v1/slides: submit a slide (streamed to disk as it arrives, or a
 * path under the server's slide root for files too big to send), answered 202 with a job; poll
 * the job; fetch its GeoJSON (QuPath detections), its overlay as a PNG and as a Deep Zoom
 * pyramid, and the slide itself as Deep Zoom tiles for OpenSeadragon-based viewers.
 */
import { createReadStream } from 'node:fs';
import path from 'node:path';

import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { slideGeoJson } from '../predict/slide-geojson.js';
import { deepZoomXml } from '../slide/deep-zoom.js';
import {
  ERROR_SCHEMA,
  ID_PARAMS,
  listOf,
  PAGE_QUERY,
  publicSlideJob,
  SLIDE_JOB_SCHEMA,
  SLIDE_SUBMIT_BODY,
  SLIDE_SUBMIT_QUERY,
  TILE_PARAMS,
} from './schemas.js';
import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { capPerClient, uploaderOf } from './slow-clients.js';
import { principalOf, readSlideSubmission, type SlidePathBody } from './uploads.js';

export function slidesApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const jobs = service.slides;

  api.post(
    '/slides',
    {
      schema: {
        summary:
          'Submit a slide (multipart field "slide", or JSON {"path"} under the slide root): 202 with a job',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        consumes: ['multipart/form-data', 'application/json'],
        querystring: SLIDE_SUBMIT_QUERY,
        body: SLIDE_SUBMIT_BODY,
        response: { 202: SLIDE_JOB_SCHEMA, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'pathologist', audit: 'slide.create' },
      // One user or key streams a few slides at once, not every connection the server has.
      onRequest: capPerClient(LIMITS.uploadsPerClient, uploaderOf, (cap) => {
        return new PathotypeError(
          'ERR_RATE_LIMITED',
          `you have ${cap} slide submissions in progress already: send the next when one is answered`,
        );
      }),
    },
    async (request, reply) => {
      // The JSON body has been checked against SLIDE_SUBMIT_BODY; a multipart one is streamed.
      const body = request.isMultipart() ? undefined : (request.body as SlidePathBody | undefined);
      // An unknown model name is refused before a byte of the slide is stored.
      const model = await service.modelFor(request.query.model);
      const submission = await readSlideSubmission(request, body, service.limits.slideMaxBytes);
      const job = await service.submitSlide(
        submission,
        request.query.slideMpp ?? null,
        principalOf(request).owner.id,
        model,
      );
      request.auditCase = job.id;
      return reply.code(202).header('location', `/api/v1/slides/${job.id}`).send(publicSlideJob(job));
    },
  );

  api.get(
    '/slides',
    {
      schema: {
        summary: 'Slide jobs, newest first',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        querystring: PAGE_QUERY,
        response: { 200: listOf(SLIDE_JOB_SCHEMA), '4xx': ERROR_SCHEMA },
      },
      config: { audit: 'slides.list' },
    },
    async (request) => {
      const { total, items } = await jobs.list(request.query.limit, request.query.offset);
      return { total, items: items.map(publicSlideJob) };
    },
  );

  api.get(
    '/slides/:id',
    {
      schema: {
        summary: "A slide job: its status, progress and, when done, the slide's answer",
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        response: { 200: SLIDE_JOB_SCHEMA, '4xx': ERROR_SCHEMA },
      },
      config: { audit: 'slide.read' },
    },
    async (request) => publicSlideJob(await service.findSlideJob(request.params.id)),
  );

  slideJobRoutes(app);
  slideImageRoutes(app, { hide: false });
}

/** A job's cancellation and its GeoJSON. */
function slideJobRoutes(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  api.delete(
    '/slides/:id',
    {
      schema: {
        summary:
          'Cancel a queued or running slide job (its owner or an admin): it stops within a second or two',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        response: { 200: SLIDE_JOB_SCHEMA, '4xx': ERROR_SCHEMA },
      },
      config: { access: 'pathologist', audit: 'slide.cancel' },
    },
    async (request) => publicSlideJob(await service.cancelSlide(request.params.id, principalOf(request))),
  );

  api.get(
    '/slides/:id/geojson',
    {
      schema: {
        summary:
          'The tiles as GeoJSON detections in level-0 pixels (QuPath: File > Import objects); 409 until done',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        produces: ['application/geo+json'],
        response: { 200: { description: 'a GeoJSON FeatureCollection' }, '4xx': ERROR_SCHEMA },
      },
      config: { audit: 'slide.geojson' },
    },
    async (request, reply) =>
      reply
        .type('application/geo+json')
        .send(JSON.stringify(slideGeoJson(await service.slideResult(request.params.id)))),
  );
}

/**
 * The images of a slide job: the slide and its overlay as Deep Zoom, and the overlay as one PNG.
 * Registered in the REST API and for the portal's viewer (on its session).
 */
export function slideImageRoutes(app: FastifyInstance, options: { hide: boolean }): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const { hide } = options;
  const jobFile = (id: string, name: string): Promise<string> => service.slideResultFile(id, name);

  // The class overlay, and for a model that pools by attention the tiles' weights in its answer.
  const overlays = [
    { name: 'heatmap', what: 'The class overlay' },
    {
      name: 'attention',
      what: "The attention map (each tile's weight in the answer; models that pool by attention)",
    },
  ] as const;
  for (const { name, what } of overlays) {
    api.get(
      `/slides/:id/${name}.png`,
      {
        schema: {
          hide,
          summary: `${what} over the whole slide (RGBA PNG, the slide's aspect)`,
          tags: ['slides'],
          security: [{ apiKey: [] }],
          params: ID_PARAMS,
          produces: ['image/png'],
          response: { 200: { description: 'PNG' }, '4xx': ERROR_SCHEMA },
        },
        config: { audit: 'slide.heatmap' },
      },
      async (request, reply) =>
        reply.type('image/png').send(createReadStream(await jobFile(request.params.id, `${name}.png`))),
    );

    api.get(
      `/slides/:id/${name}.dzi`,
      {
        schema: {
          hide,
          summary: `${what} as a Deep Zoom pyramid`,
          tags: ['slides'],
          security: [{ apiKey: [] }],
          params: ID_PARAMS,
        },
        config: { audit: 'slide.heatmap' },
      },
      async (request, reply) =>
        reply.type('application/xml').send(createReadStream(await jobFile(request.params.id, `${name}.dzi`))),
    );

    api.get(
      `/slides/:id/${name}_files/:level/:tile`,
      { schema: { hide: true, params: TILE_PARAMS }, config: { audit: 'slide.heatmap' } },
      async (request, reply) => {
        const { id, level, tile } = request.params;
        return reply
          .type('image/png')
          .header('cache-control', 'private, max-age=86400')
          .send(
            createReadStream(
              await jobFile(id, path.join(`${name}_files`, String(level), tile.replace(/\.jpeg$/, '.png'))),
            ),
          );
      },
    );
  }

  api.get(
    '/slides/:id/slide.dzi',
    {
      schema: {
        hide,
        summary: 'The slide as Deep Zoom (DZI) for OpenSeadragon',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
      },
      config: { audit: 'slide.tile' },
    },
    async (request, reply) => {
      const { width, height } = await service.slideSize(request.params.id);
      return reply.type('application/xml').send(deepZoomXml(width, height, 'jpeg'));
    },
  );

  api.get(
    '/slides/:id/slide_files/:level/:tile',
    { schema: { hide: true, params: TILE_PARAMS }, config: { audit: 'slide.tile' } },
    async (request, reply) => {
      const { id, level, tile } = request.params;
      const [col, row] = tile
        .replace(/\.(jpeg|png)$/, '')
        .split('_')
        .map(Number) as [number, number];
      return reply
        .type('image/jpeg')
        .header('cache-control', 'private, max-age=86400')
        .send(await service.slideTile(id, level, col, row));
    },
  );
}
