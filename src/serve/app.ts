/**
 * `pathotype serve`: one Fastify server with the pathologist's portal and the REST API for
 * slide viewers, both on the shared predictor. Every route has a schema; errors have one shape
 * ({ error: { code, message } }); uploads are sniffed and size- and pixel-limited before they
 * are decoded; inference goes through a bounded queue; every prediction is recorded.
 */
import { createHash } from 'node:crypto';
import { readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import multipart from '@fastify/multipart';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, {
  type FastifyError,
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
} from 'fastify';

import { ERROR_CODES, PathotypeError, type ErrorCode } from '../errors.js';
import { decodeRgb, encodePng, probeImage, DEFAULT_MAX_PIXELS } from '../data/image-io.js';
import { heatmapPng, overlayPng } from '../predict/heatmap.js';
import { Predictor } from '../predict/predictor.js';
import { errorPage, historyPage, resultPage, uploadPage } from './portal.js';
import { InferenceQueue } from './queue.js';
import { ServerRecords, type PredictionRecord } from './records.js';

export interface ServerOptions {
  modelDir: string;
  /** Folder for serve.sqlite and kept uploads. */
  dataDir: string;
  /** Keep uploaded images, so results can be shown again. Default true. */
  keepImages?: boolean;
  maxBytes?: number;
  maxPixels?: number;
  /** Inference jobs at once (the engine computes one at a time anyway). */
  concurrency?: number;
  /** Requests allowed to wait for inference; more get 503. */
  maxWaiting?: number;
  batchSize?: number;
  bf16?: boolean;
  logger?: boolean;
}

const ERROR_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

const NUMBER_MAP = { type: 'object', additionalProperties: { type: 'number' } } as const;

const PREDICTION_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    createdAt: { type: 'string' },
    fileName: { type: 'string' },
    sha256: { type: 'string' },
    bytes: { type: 'integer' },
    width: { type: 'integer' },
    height: { type: 'integer' },
    model: { type: 'object', properties: { id: { type: 'string' }, version: { type: 'integer' } } },
    status: {
      enum: ['answered', 'uncertain'],
      description: "'uncertain': below the model's calibrated threshold; refer to a pathologist",
    },
    predicted: { type: 'string', description: 'the most likely subtype (also when uncertain)' },
    confidence: { type: 'number', description: 'calibrated probability of the predicted subtype' },
    probabilities: NUMBER_MAP,
    threshold: { type: ['number', 'null'] },
    rule: { type: 'string' },
    byMajority: { type: 'string' },
    byMean: { type: 'string' },
    voteShares: NUMBER_MAP,
    meanProbabilities: NUMBER_MAP,
    patches: { type: 'integer' },
    scale: { type: ['number', 'null'] },
    grid: {
      type: 'object',
      properties: {
        cols: { type: 'integer' },
        rows: { type: 'integer' },
        patchSize: { type: 'integer' },
        stride: { type: 'integer' },
        width: { type: 'integer' },
        height: { type: 'integer' },
        cells: {
          type: 'array',
          description: '[col, row, class index, confidence] per patch',
          items: { type: 'array', items: { type: 'number' } },
        },
      },
    },
    timings: {
      type: 'object',
      properties: {
        totalMs: { type: 'number' },
        queueMs: { type: 'number' },
        preprocessMs: { type: 'number' },
        inferenceMs: { type: 'number' },
      },
    },
    links: {
      type: 'object',
      properties: { self: { type: 'string' }, heatmap: { type: 'string' }, page: { type: 'string' } },
    },
  },
} as const;

const ID_PARAMS = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

function publicPrediction(record: PredictionRecord): Record<string, unknown> {
  const r = record.result;
  return {
    id: record.id,
    createdAt: record.createdAt,
    fileName: record.fileName,
    sha256: record.sha256,
    bytes: record.bytes,
    width: record.width,
    height: record.height,
    model: { id: record.modelId, version: record.modelVersion },
    // Records made before calibration existed were all answers.
    status: r.status ?? 'answered',
    predicted: r.predicted,
    confidence: r.confidence ?? r.meanProbabilities[r.predicted] ?? 0,
    probabilities: r.probabilities ?? r.meanProbabilities,
    threshold: r.threshold ?? null,
    rule: r.rule,
    byMajority: r.byMajority,
    byMean: r.byMean,
    voteShares: r.voteShares,
    meanProbabilities: r.meanProbabilities,
    patches: r.patches,
    scale: r.scale,
    grid: r.grid,
    timings: record.timings,
    links: {
      self: `/api/v1/predictions/${record.id}`,
      heatmap: `/api/v1/predictions/${record.id}/heatmap.png`,
      page: `/cases/${record.id}`,
    },
  };
}

function describeCode(code: ErrorCode, message: string): { status: number; code: string; message: string } {
  return { status: ERROR_CODES[code].status, code, message };
}

/** Status and code for an error, in the one shape every route answers with. */
function describeError(error: unknown): { status: number; code: string; message: string } {
  if (error instanceof PathotypeError)
    return { status: error.status, code: error.code, message: error.message };
  const fastifyError = error as Partial<FastifyError>;
  if (fastifyError.validation)
    return describeCode('ERR_VALIDATION', fastifyError.message ?? 'invalid request');
  if (typeof fastifyError.statusCode === 'number' && fastifyError.statusCode < 500) {
    const code =
      fastifyError.code === 'FST_REQ_FILE_TOO_LARGE' || fastifyError.statusCode === 413
        ? 'ERR_TOO_LARGE'
        : (fastifyError.code ?? 'ERR_REQUEST');
    return { status: fastifyError.statusCode, code, message: fastifyError.message ?? 'bad request' };
  }
  return describeCode('ERR_INTERNAL', 'internal error');
}

export interface PathotypeServer {
  app: FastifyInstance;
  records: ServerRecords;
  predictor: Predictor;
  queue: InferenceQueue;
}

export async function buildServer(options: ServerOptions): Promise<PathotypeServer> {
  const maxBytes = options.maxBytes ?? 50 * 1024 * 1024;
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  const keepImages = options.keepImages ?? true;
  const predictor = await Predictor.load(options.modelDir, {
    maxPixels,
    ...(options.batchSize ? { batchSize: options.batchSize } : {}),
    ...(options.bf16 ? { bf16: true } : {}),
  });
  const manifest = predictor.manifest;
  const modelId = `${manifest.name}@${manifest.version}`;
  const records = new ServerRecords(
    path.join(options.dataDir, 'serve.sqlite'),
    path.join(options.dataDir, 'uploads'),
  );
  records.removeOrphanUploads();
  const queue = new InferenceQueue(options.concurrency ?? 1, options.maxWaiting ?? 32);

  const app = Fastify({
    logger: options.logger ?? false,
    bodyLimit: maxBytes,
    return503OnClosing: true,
    // On shutdown, idle keep-alive sockets close at once; requests in flight still finish.
    forceCloseConnections: 'idle',
  });
  await app.register(multipart, { limits: { fileSize: maxBytes, files: 1, fields: 10 } });
  for (const type of ['image/png', 'image/jpeg', 'image/tiff', 'application/octet-stream']) {
    app.addContentTypeParser(type, { parseAs: 'buffer', bodyLimit: maxBytes }, (_req, body, done) => {
      done(null, body);
    });
  }
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'pathotype',
        version: manifest.software.pathotype,
        description: 'Lymphoma subtype classification of H&E images. Research use only, not for diagnosis.',
      },
      components: {
        securitySchemes: {
          apiKey: {
            type: 'http',
            scheme: 'bearer',
            description: "A key from 'pathotype keys create', when keys are configured",
          },
        },
      },
    },
  });
  await app.register(swaggerUi, { routePrefix: '/docs' });

  app.setErrorHandler((error, request, reply) => {
    const { status, code, message } = describeError(error);
    if (status >= 500 && status !== 503) request.log.error(error);
    if (code === 'ERR_BUSY') void reply.header('retry-after', '2');
    const wantsHtml =
      !request.url.startsWith('/api/') &&
      !request.url.startsWith('/portal/') &&
      (request.headers.accept ?? '').includes('text/html');
    if (wantsHtml) return reply.code(status).type('text/html').send(errorPage(status, message));
    return reply.code(status).send({ error: { code, message } });
  });
  app.setNotFoundHandler((request, reply) => {
    const message = `no route ${request.method} ${request.url.split('?')[0] ?? ''}`;
    if ((request.headers.accept ?? '').includes('text/html') && !request.url.startsWith('/api/')) {
      return reply.code(404).type('text/html').send(errorPage(404, message));
    }
    return reply.code(ERROR_CODES.ERR_NOT_FOUND.status).send({ error: { code: 'ERR_NOT_FOUND', message } });
  });

  // API keys, hashed at rest, guard the REST API once any key exists.
  const authenticate = async (request: FastifyRequest): Promise<void> => {
    if (!records.keysRequired()) return;
    const header = request.headers.authorization ?? '';
    const key = header.startsWith('Bearer ')
      ? header.slice(7).trim()
      : (request.headers['x-api-key'] as string | undefined);
    const record = key ? records.verifyKey(key) : undefined;
    if (!record)
      throw new PathotypeError('ERR_UNAUTHORIZED', 'a valid API key is required (Authorization: Bearer KEY)');
    (request as FastifyRequest & { keyId?: string }).keyId = record.id;
    return Promise.resolve();
  };

  const readUpload = async (request: FastifyRequest): Promise<{ buffer: Buffer; fileName: string }> => {
    if (request.isMultipart()) {
      const file = await request.file();
      if (!file)
        throw new PathotypeError(
          'ERR_NO_FILE',
          "the form has no file: send the image in a field named 'image'",
        );
      const buffer = await file.toBuffer();
      return { buffer, fileName: path.basename(file.filename || 'upload') };
    }
    const body = request.body;
    if (!Buffer.isBuffer(body) || body.length === 0) {
      throw new PathotypeError(
        'ERR_NO_FILE',
        'send the image as multipart/form-data (field image) or as a raw image/* body',
      );
    }
    const name =
      (request.query as { filename?: string }).filename ??
      (request.headers['x-file-name'] as string | undefined) ??
      'upload';
    return { buffer: body, fileName: path.basename(name) };
  };

  const predict = async (request: FastifyRequest): Promise<PredictionRecord> => {
    const started = performance.now();
    const { buffer, fileName } = await readUpload(request);
    // Sniffed from the bytes, checked against the limits, before any pixel is decoded.
    const probe = await probeImage(buffer, { maxPixels });
    const query = request.query as { scale?: number };
    const queued = performance.now();
    let queueMs = 0;
    const [result] = await queue.run(async () => {
      queueMs = performance.now() - queued;
      return predictor.predictImages([
        { source: buffer, name: fileName, ...(query.scale ? { scale: query.scale } : {}) },
      ]);
    });
    if (!result) throw new PathotypeError('ERR_INTERNAL', 'no prediction came back');
    const id = records.newId();
    let imageFile: string | null = null;
    if (keepImages) {
      imageFile = `${id}.${probe.format === 'jpeg' ? 'jpg' : probe.format === 'tiff' ? 'tif' : 'png'}`;
      const target = path.join(records.uploadsDir, imageFile);
      await writeFile(`${target}.tmp`, buffer);
      await rename(`${target}.tmp`, target);
    }
    const record: PredictionRecord = {
      id,
      createdAt: new Date().toISOString(),
      fileName,
      sha256: createHash('sha256').update(buffer).digest('hex'),
      bytes: buffer.length,
      width: probe.width,
      height: probe.height,
      modelId,
      modelVersion: manifest.version,
      result,
      timings: {
        totalMs: performance.now() - started,
        queueMs,
        preprocessMs: result.timings.preprocessMs,
        inferenceMs: result.timings.inferenceMs,
      },
      client: {
        address: request.ip,
        userAgent: request.headers['user-agent'] ?? '',
        keyId: (request as FastifyRequest & { keyId?: string }).keyId ?? null,
      },
      imageFile,
    };
    records.insert(record);
    return record;
  };

  const findRecord = (id: string): PredictionRecord => {
    const record = records.get(id);
    if (!record) throw new PathotypeError('ERR_NOT_FOUND', `no prediction ${id}`);
    return record;
  };

  const imageOf = async (record: PredictionRecord): Promise<Awaited<ReturnType<typeof decodeRgb>>> => {
    const file = records.imagePath(record);
    if (!file) throw new PathotypeError('ERR_NOT_FOUND', `the image of prediction ${record.id} was not kept`);
    return decodeRgb(await readFile(file), {
      width: record.result.grid.width,
      height: record.result.grid.height,
      maxPixels,
    });
  };

  const predictionRoute = {
    consumes: ['multipart/form-data', 'image/png', 'image/jpeg', 'image/tiff', 'application/octet-stream'],
    querystring: {
      type: 'object',
      properties: {
        filename: { type: 'string', maxLength: 255 },
        scale: {
          type: 'number',
          exclusiveMinimum: 0,
          maximum: 16,
          description: 'pixel scale relative to the original 1388x1040 release',
        },
      },
      additionalProperties: false,
    },
  };

  // ---------------------------------------------------------------- REST API
  await app.register(
    (api, _opts, done) => {
      api.addHook('onRequest', authenticate);
      api.post(
        '/predictions',
        {
          schema: {
            summary: 'Classify an image (multipart field "image", or a raw image body)',
            tags: ['predictions'],
            security: [{ apiKey: [] }],
            ...predictionRoute,
            response: { 201: PREDICTION_SCHEMA, '4xx': ERROR_SCHEMA, 503: ERROR_SCHEMA },
          },
        },
        async (request, reply) => reply.code(201).send(publicPrediction(await predict(request))),
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
                limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 },
                offset: { type: 'integer', minimum: 0, default: 0 },
                q: { type: 'string', maxLength: 200 },
              },
              additionalProperties: false,
            },
            response: {
              200: {
                type: 'object',
                properties: {
                  total: { type: 'integer' },
                  items: { type: 'array', items: PREDICTION_SCHEMA },
                },
              },
              '4xx': ERROR_SCHEMA,
            },
          },
        },
        (request) => {
          const q = request.query as { limit: number; offset: number; q?: string };
          const { total, items } = records.list({
            limit: q.limit,
            offset: q.offset,
            ...(q.q ? { query: q.q } : {}),
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
        },
        (request) => publicPrediction(findRecord((request.params as { id: string }).id)),
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
            response: { '4xx': ERROR_SCHEMA },
          },
        },
        async (request, reply) => {
          const record = findRecord((request.params as { id: string }).id);
          return reply.type('image/png').send(await heatmapPng(await imageOf(record), record.result.grid));
        },
      );
      api.get(
        '/models',
        {
          schema: {
            summary: 'The model this server runs',
            tags: ['models'],
            security: [{ apiKey: [] }],
            response: {
              200: {
                type: 'array',
                items: {
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
                      description:
                        'crossValidation: the expected accuracy on new patients, with its interval',
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
                },
              },
              '4xx': ERROR_SCHEMA,
            },
          },
        },
        () => [
          {
            id: modelId,
            name: manifest.name,
            version: manifest.version,
            architecture: manifest.spec.name,
            classes: manifest.classes,
            patchSize: manifest.preprocess.tiles.patchSize,
            targetScale: manifest.preprocess.targetScale,
            normalisation: manifest.preprocess.normaliser.method,
            createdAt: manifest.createdAt,
            syntheticWeights: manifest.syntheticWeights ?? false,
            metrics: manifest.metrics,
            calibration: manifest.calibration ?? null,
          },
        ],
      );
      done();
    },
    { prefix: '/api/v1' },
  );

  // ---------------------------------------------------------------- health
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
      if (queue.full)
        return reply
          .code(503)
          .header('retry-after', '2')
          .send({ error: { code: 'ERR_BUSY', message: 'the inference queue is full' } });
      return { status: 'ready', model: modelId, running: queue.running, waiting: queue.waiting };
    },
  );
  app.get('/openapi.json', { schema: { hide: true } }, () => app.swagger());

  // ---------------------------------------------------------------- portal
  const html = (reply: FastifyReply, body: string): FastifyReply =>
    reply.type('text/html; charset=utf-8').send(body);
  app.get('/', { schema: { hide: true } }, (_request, reply) => html(reply, uploadPage(manifest)));
  app.post('/portal/predictions', { schema: { hide: true, ...predictionRoute } }, async (request, reply) => {
    const record = await predict(request);
    return reply.code(201).send({ id: record.id, predicted: record.result.predicted });
  });
  app.get(
    '/cases',
    {
      schema: {
        hide: true,
        querystring: {
          type: 'object',
          properties: {
            page: { type: 'integer', minimum: 1, default: 1 },
            q: { type: 'string', maxLength: 200, default: '' },
          },
        },
      },
    },
    (request, reply) => {
      const { page, q } = request.query as { page: number; q: string };
      const pageSize = 20;
      const { total, items } = records.list({
        limit: pageSize,
        offset: (page - 1) * pageSize,
        ...(q ? { query: q } : {}),
      });
      return html(reply, historyPage(items, total, page, pageSize, q));
    },
  );
  app.get('/cases/:id', { schema: { hide: true, params: ID_PARAMS } }, (request, reply) => {
    const record = findRecord((request.params as { id: string }).id);
    return html(reply, resultPage(record, manifest, records.imagePath(record) !== null));
  });
  app.get('/cases/:id/image.png', { schema: { hide: true, params: ID_PARAMS } }, async (request, reply) => {
    const record = findRecord((request.params as { id: string }).id);
    const png = await encodePng(await imageOf(record));
    return reply.type('image/png').header('cache-control', 'private, max-age=86400').send(png);
  });
  app.get('/cases/:id/overlay.png', { schema: { hide: true, params: ID_PARAMS } }, async (request, reply) => {
    const record = findRecord((request.params as { id: string }).id);
    return reply
      .type('image/png')
      .header('cache-control', 'private, max-age=86400')
      .send(await overlayPng(record.result.grid));
  });

  // Node's server.close() leaves a keep-alive socket open (up to keepAliveTimeout, 72 s) once
  // its in-flight response is done; answers sent while closing say `Connection: close` so the
  // socket ends with the response and shutdown takes as long as the slowest request.
  let closing = false;
  app.addHook('preClose', () => {
    closing = true;
  });
  app.addHook('onSend', async (_request, reply) => {
    if (closing) reply.header('connection', 'close');
  });
  app.addHook('onClose', () => {
    records.close();
  });
  return { app, records, predictor, queue };
}
