/**
 * Slides over REST, under /api/v1/slides: submit a slide (streamed to disk as it arrives, or a
 * path under the server's slide root for files too big to send), answered 202 with a job; poll
 * the job; fetch its GeoJSON (QuPath detections), its overlay as a PNG and as a Deep Zoom
 * pyramid, and the slide itself as Deep Zoom tiles for OpenSeadragon-based viewers.
 */
import { randomUUID } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, realpathSync, rmSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';

import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { ConfigError, PathotypeError } from '../errors.js';
import { deepZoomTile, deepZoomXml } from '../slide/deep-zoom.js';
import { Slide, SLIDE_EXTENSIONS } from '../slide/slide.js';
import { ensureDir } from '../workspace.js';
import { apiKeyHook } from './auth.js';
import { ERROR_SCHEMA, ID_PARAMS, PAGE_PROPERTIES } from './schemas.js';
import { findJob, jobGeoJson, jobPrediction, type SlideJob } from './slide-jobs.js';

const TILE_PARAMS = {
  type: 'object',
  properties: {
    id: { type: 'string', pattern: '^[0-9a-f-]{36}$' },
    level: { type: 'integer', minimum: 0, maximum: 40 },
    tile: { type: 'string', pattern: '^[0-9]{1,6}_[0-9]{1,6}\\.(jpeg|png)$' },
  },
  required: ['id', 'level', 'tile'],
} as const;

export const SLIDE_JOB_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    status: { enum: ['queued', 'running', 'done', 'failed'] },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    fileName: { type: 'string' },
    model: { type: 'string' },
    progress: {
      type: 'object',
      properties: { done: { type: 'integer' }, total: { type: 'integer' } },
    },
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
    result: { type: ['object', 'null'], additionalProperties: true, description: 'the slide-level answer' },
    slide: { type: ['object', 'null'], additionalProperties: true },
    tiling: { type: ['object', 'null'], additionalProperties: true },
    links: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

export function publicSlideJob(job: SlideJob): Record<string, unknown> & { id: string } {
  const base = `/api/v1/slides/${job.id}`;
  return {
    id: job.id,
    status: job.status,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    fileName: job.fileName,
    model: job.modelId,
    progress: job.progress,
    error: job.error,
    result: job.summary?.result ?? null,
    slide: job.summary ? { ...job.summary.slide, path: undefined } : null,
    tiling: job.summary?.tiling ?? null,
    links: {
      self: base,
      geojson: `${base}/geojson`,
      heatmap: `${base}/heatmap.png`,
      heatmapDzi: `${base}/heatmap.dzi`,
      slideDzi: `${base}/slide.dzi`,
      viewer: `/slides/${job.id}`,
    },
  };
}

/** A path under the slide root, with symbolic links resolved: nothing outside it is readable. */
function underRoot(root: string | undefined, relative: string): string {
  if (!root)
    throw new ConfigError(
      'this server has no slide root: start it with --slide-root DIR, or upload the slide',
    );
  const base = realpathSync(root);
  const candidate = path.resolve(base, relative);
  if (!existsSync(candidate))
    throw new PathotypeError('ERR_NOT_FOUND', `${relative} is not under the slide root`);
  const real = realpathSync(candidate);
  if (real !== base && !real.startsWith(base + path.sep))
    throw new PathotypeError('ERR_NOT_FOUND', `${relative} is not under the slide root`);
  return real;
}

/** Streams the multipart file to the job's folder, never holding it in memory. */
async function receiveSlide(
  request: FastifyRequest,
  dir: string,
  maxBytes: number,
): Promise<{ file: string; name: string }> {
  const part = await request.file({ limits: { fileSize: maxBytes, files: 1 } });
  if (!part)
    throw new PathotypeError('ERR_NO_FILE', "the form has no file: send the slide in a field named 'slide'");
  const name = path.basename(part.filename || 'slide.tif');
  const extension = path.extname(name).toLowerCase();
  if (![...SLIDE_EXTENSIONS, '.tif', '.tiff'].includes(extension)) {
    part.file.resume();
    throw new PathotypeError(
      'ERR_SLIDE_UNSUPPORTED',
      `${name}: send a single-file slide (${[...SLIDE_EXTENSIONS, '.tif'].join(', ')}); multi-file formats go by path`,
    );
  }
  ensureDir(dir);
  const target = path.join(dir, `slide${extension}`);
  await pipeline(part.file, createWriteStream(`${target}.part`));
  if (part.file.truncated) {
    rmSync(`${target}.part`, { force: true });
    throw new PathotypeError(
      'ERR_TOO_LARGE',
      `${name} is larger than the ${(maxBytes / 2 ** 30).toFixed(1)} GiB this server accepts`,
    );
  }
  await rename(`${target}.part`, target);
  return { file: target, name };
}

export function slidesApi(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const jobs = service.slides;
  api.addHook('onRequest', apiKeyHook(service.records));

  api.post(
    '/slides',
    {
      schema: {
        summary:
          'Submit a slide (multipart field "slide", or JSON {"path"} under the slide root): 202 with a job',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        consumes: ['multipart/form-data', 'application/json'],
        querystring: {
          type: 'object',
          properties: { slideMpp: { type: 'number', exclusiveMinimum: 0, maximum: 100 } },
          additionalProperties: false,
        },
        response: { 202: SLIDE_JOB_SCHEMA, '4xx': ERROR_SCHEMA },
      },
    },
    async (request, reply) => {
      const id = randomUUID();
      const dir = jobs.jobDir(id);
      let slidePath: string;
      let fileName: string;
      let uploaded = false;
      try {
        if (request.isMultipart()) {
          const received = await receiveSlide(request, dir, service.limits.slideMaxBytes);
          slidePath = received.file;
          fileName = received.name;
          uploaded = true;
        } else {
          const body = request.body as { path?: unknown } | undefined;
          if (typeof body?.path !== 'string' || body.path.length === 0)
            throw new PathotypeError(
              'ERR_NO_FILE',
              'send the slide as multipart/form-data (field slide) or JSON {"path": "..."}',
            );
          slidePath = underRoot(service.limits.slideRoot, body.path);
          fileName = path.basename(slidePath);
        }
        // Refused now, not as a failed job: a file OpenSlide cannot read.
        await (await Slide.open(slidePath)).close();
      } catch (error) {
        rmSync(dir, { recursive: true, force: true });
        throw error;
      }
      const job = await jobs.create({
        id,
        fileName,
        slidePath,
        uploaded,
        slideMpp: request.query.slideMpp ?? null,
      });
      return reply.code(202).header('location', `/api/v1/slides/${id}`).send(publicSlideJob(job));
    },
  );

  api.get(
    '/slides',
    {
      schema: {
        summary: 'Slide jobs, newest first',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        querystring: {
          type: 'object',
          properties: PAGE_PROPERTIES,
          required: ['limit', 'offset'],
          additionalProperties: false,
        },
        response: {
          200: {
            type: 'object',
            properties: { total: { type: 'integer' }, items: { type: 'array', items: SLIDE_JOB_SCHEMA } },
          },
          '4xx': ERROR_SCHEMA,
        },
      },
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
    },
    async (request) => publicSlideJob(await findJob(jobs, request.params.id)),
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
    },
    async (request, reply) =>
      reply.type('application/geo+json').send(JSON.stringify(await jobGeoJson(jobs, request.params.id))),
  );

  slideImageRoutes(app, { hide: false });
}

/**
 * The images of a slide job: the slide and its overlay as Deep Zoom, and the overlay as one PNG.
 * Registered in the REST API (behind its keys) and for the portal's viewer, which OpenSeadragon
 * loads without a key.
 */
export function slideImageRoutes(app: FastifyInstance, options: { hide: boolean }): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const jobs = service.slides;
  const { hide } = options;
  const jobFile = async (id: string, name: string): Promise<string> => {
    await jobPrediction(jobs, id);
    const file = path.join(jobs.jobDir(id), name);
    if (!existsSync(file)) throw new PathotypeError('ERR_NOT_FOUND', `slide job ${id} has no ${name}`);
    return file;
  };

  api.get(
    '/slides/:id/heatmap.png',
    {
      schema: {
        hide,
        summary: "The class overlay over the whole slide (RGBA PNG, the slide's aspect)",
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
        produces: ['image/png'],
        response: { 200: { description: 'PNG' }, '4xx': ERROR_SCHEMA },
      },
    },
    async (request, reply) =>
      reply.type('image/png').send(createReadStream(await jobFile(request.params.id, 'heatmap.png'))),
  );

  api.get(
    '/slides/:id/heatmap.dzi',
    {
      schema: {
        hide,
        summary: 'The overlay as a Deep Zoom pyramid',
        tags: ['slides'],
        security: [{ apiKey: [] }],
        params: ID_PARAMS,
      },
    },
    async (request, reply) =>
      reply.type('application/xml').send(createReadStream(await jobFile(request.params.id, 'heatmap.dzi'))),
  );

  api.get(
    '/slides/:id/heatmap_files/:level/:tile',
    { schema: { hide: true, params: TILE_PARAMS } },
    async (request, reply) => {
      const { id, level, tile } = request.params;
      return reply
        .type('image/png')
        .header('cache-control', 'private, max-age=86400')
        .send(
          createReadStream(
            await jobFile(id, path.join('heatmap_files', String(level), tile.replace(/\.jpeg$/, '.png'))),
          ),
        );
    },
  );

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
    },
    async (request, reply) => {
      const slide = await service.openSlide(request.params.id);
      return reply.type('application/xml').send(deepZoomXml(slide.info.width, slide.info.height, 'jpeg'));
    },
  );

  api.get(
    '/slides/:id/slide_files/:level/:tile',
    { schema: { hide: true, params: TILE_PARAMS } },
    async (request, reply) => {
      const { id, level, tile } = request.params;
      const [col, row] = tile
        .replace(/\.(jpeg|png)$/, '')
        .split('_')
        .map(Number) as [number, number];
      const slide = await service.openSlide(id);
      return reply
        .type('image/jpeg')
        .header('cache-control', 'private, max-age=86400')
        .send(await deepZoomTile(slide, level, col, row));
    },
  );
}
