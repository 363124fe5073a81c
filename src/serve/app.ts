/**
 * `pathotype serve`: one Fastify server with the pathologist's portal and the REST API for
 * slide viewers, both on the shared predictor. The server is composed of plugins (errors, REST
 * API, health, portal) that share one PredictionService through `app.pathotype`. Every route has
 * a schema; errors have one shape ({ error: { code, message } }); uploads are sniffed and size-
 * and pixel-limited before they are decoded; inference goes through a bounded queue; every
 * prediction is recorded.
 */
import { STATUS_CODES, type Server } from 'node:http';
import type { Socket } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { createRequire } from 'node:module';

import multipart from '@fastify/multipart';
import fastifyStatic from '@fastify/static';
import swagger from '@fastify/swagger';
import swaggerUi from '@fastify/swagger-ui';
import Fastify, { type FastifyInstance, type FastifyServerOptions } from 'fastify';

import type { Bf16Setting } from '../engine/precision.js';
import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import type { Predictor } from '../predict/predictor.js';
import { adminRoutes } from './admin-routes.js';
import { blockUntrustedDecoders } from './decoders.js';
import origins, { publicOrigin } from './origin.js';
import slowClients, { type BodyRate } from './slow-clients.js';
import { restApi } from './api.js';
import { loginRoutes } from './login-routes.js';
import { reviewsApi } from './reviews-api.js';
import { modelsApi } from './models-api.js';
import { reviewLoopRoutes } from './review-loop-routes.js';
import { registerSecurity } from './security.js';
import { slidesApi } from './slides-api.js';
import errorHandling from './error-handler.js';
import { healthRoutes } from './health.js';
import { portalRoutes } from './portal-routes.js';
import { executeSlideJob } from '../predict/slide-job.js';
import { slideSignalsOf } from './case-signals.js';
import { openStore, type ServerStore } from '../store/open.js';
import type { SharedQueueOptions } from '../store/shared-slide-queue.js';
import { InferenceLimiter } from './inference-limiter.js';
import { UPLOAD_CONSUMES } from './schemas.js';
import { PredictionService } from './service.js';
import { ServedModels } from './served-models.js';

/** The limits `serve` applies unless told otherwise (from LIMITS); the CLI shows these as its defaults. */
export const SERVE_DEFAULTS = {
  maxMegabytes: LIMITS.uploadMegabytes,
  maxPixels: LIMITS.imagePixels,
  concurrency: LIMITS.inferenceConcurrency,
  maxWaiting: LIMITS.inferenceWaiting,
  keepImages: true,
  slideMaxGigabytes: LIMITS.slideUploadGigabytes,
} as const;

export interface ServerOptions {
  /** The package uploads are answered with by default (its name's active version). */
  modelDir: string;
  /** Further packages: other names, or other versions of a name (challengers). */
  moreModelDirs?: string[];
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
  bf16?: Bf16Setting;
  logger?: boolean;
  /**
   * Records and API keys in PostgreSQL (postgres://...), shared by every server started with it;
   * default: SQLite in dataDir. Uploads go to dataDir/uploads, which such servers must share.
   */
  database?: string;
  /** The shared slide queue's timing (tests shorten it). */
  sharedQueue?: SharedQueueOptions;
  /** Slides may be submitted by a path under this folder (files too big to upload). */
  slideRoot?: string;
  /** Largest slide upload, streamed to disk. */
  slideMaxGigabytes?: number;
  /** Serve anonymous requests even once users or keys exist. */
  allowAnonymous?: boolean;
  /** HTTPS directly: PEM certificate and key. */
  tls?: { cert: Buffer; key: Buffer };
  /** Behind a reverse proxy: trust its X-Forwarded-* headers (Fastify's trustProxy). */
  trustProxy?: boolean | string | number;
  /** The address browsers reach the server at (https://HOST[:PORT]): its own origin. */
  publicOrigin?: string;
  /** Origins allowed to call the REST API from a browser (CORS); none by default. */
  corsOrigins?: string[];
  /** The slowest a request body may arrive (tests shorten the window); default from LIMITS. */
  bodyRate?: BodyRate;
}

export interface PathotypeServer {
  app: FastifyInstance;
  store: ServerStore;
  /** The default name's active version when the server started. */
  predictor: Predictor;
  models: ServedModels;
  limiter: InferenceLimiter;
  /** Resolves when no slide job is running or waiting. */
  slidesIdle: () => Promise<void>;
  /** Every route registered, with what it needs: the census the access tests walk. */
  routes: { method: string; url: string; access: string }[];
}

/** Body parsers, the OpenAPI document, and every route: the API, health, the portal and its files. */
async function registerRoutes(app: FastifyInstance, maxBytes: number): Promise<void> {
  const service = app.pathotype;
  await app.register(multipart, { limits: { fileSize: maxBytes, files: 1, fields: 10 } });
  // A raw image body is handed on unread: the upload route streams it to disk (uploads.ts).
  for (const type of UPLOAD_CONSUMES.filter((t) => t !== 'multipart/form-data'))
    app.addContentTypeParser(type, (_request, payload, done) => done(null, payload));
  await app.register(swagger, {
    openapi: {
      info: {
        title: 'pathotype',
        version: service.manifest.software.pathotype,
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
  await app.register(restApi, { prefix: '/api/v1' });
  await app.register(slidesApi, { prefix: '/api/v1' });
  await app.register(reviewsApi, { prefix: '/api/v1' });
  await app.register(modelsApi, { prefix: '/api/v1' });
  await app.register(reviewLoopRoutes);
  await app.register(healthRoutes);
  await app.register(portalRoutes);
  await app.register(adminRoutes);
  await app.register(loginRoutes);
  // The portal's page scripts: files, so the Content-Security-Policy allows no inline script.
  await app.register(fastifyStatic, {
    root: fileURLToPath(new URL('../../../assets/portal', import.meta.url)),
    prefix: '/static/portal/',
    decorateReply: false,
    index: false,
  });
  // OpenSeadragon, served from its npm package: the viewer works without any CDN.
  await app.register(fastifyStatic, {
    root: path.dirname(createRequire(import.meta.url).resolve('openseadragon')),
    prefix: '/static/openseadragon/',
    decorateReply: false,
    index: false,
  });
}

/** The version a slide job was submitted to; a job of a version this server no longer holds fails. */
function slidePredictor(models: ServedModels, modelId: string): Predictor {
  const model = models.get(modelId);
  if (!model)
    throw new PathotypeError(
      'ERR_NOT_FOUND',
      `the slide job was submitted to ${modelId}, which this server does not hold`,
    );
  return model.predictor;
}

/** Node's own HTTP limits: headers within the timeout (checked every second), of bounded size. */
const HTTP_SERVER_OPTIONS = {
  headersTimeout: LIMITS.headersTimeoutMs,
  requestTimeout: LIMITS.requestTimeoutMs,
  connectionsCheckingInterval: 1000,
  maxHeaderSize: LIMITS.headerBytes,
};

/** Errors Node's parser meets before Fastify sees a request, answered in the server's one shape. */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  const [status, code, message]: [number, string, string] =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? [431, 'ERR_HEADERS_TOO_LARGE', "the request's headers are larger than the server reads"]
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? [408, 'ERR_TIMEOUT', 'the request did not arrive in time']
        : [400, 'ERR_REQUEST', 'a malformed HTTP request'];
  if (!socket.writable) return void socket.destroy();
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** More than LIMITS.connectionsPerAddress open connections from one address: the next is closed at once. */
function capConnectionsPerAddress(server: Server): void {
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const address = socket.remoteAddress ?? '';
    const count = (open.get(address) ?? 0) + 1;
    if (count > LIMITS.connectionsPerAddress) {
      socket.destroy();
      return;
    }
    open.set(address, count);
    socket.once('close', () => {
      const left = (open.get(address) ?? 1) - 1;
      if (left > 0) open.set(address, left);
      else open.delete(address);
    });
  });
}

/** The models, the slide queue and the prediction service over an open store. */
async function openService(
  options: ServerOptions,
  store: ServerStore,
  limits: { maxBytes: number; maxPixels: number },
): Promise<{ models: ServedModels; service: PredictionService; limiter: InferenceLimiter }> {
  const { maxBytes, maxPixels } = limits;
  const models = await ServedModels.open(
    [options.modelDir, ...(options.moreModelDirs ?? [])],
    path.join(options.dataDir, 'models'),
    store,
    {
      maxPixels,
      ...(options.batchSize ? { batchSize: options.batchSize } : {}),
      ...(options.bf16 !== undefined ? { bf16: options.bf16 } : {}),
    },
  );
  await store.predictions.removeOrphanUploads();
  const slides = await store.openSlideQueue(
    path.join(options.dataDir, 'slides'),
    () => models.active().id,
    async (job, dir, signal, onProgress) => {
      const summary = await executeSlideJob(
        slidePredictor(models, job.modelId),
        job,
        dir,
        signal,
        onProgress,
      );
      // Derived from the summary: a failure to record them costs the queue's sort and the drift
      // page this slide, not the slide's answer (nor a rerun of the whole slide).
      await store.signals
        .add(slideSignalsOf(job, summary))
        .catch((error: unknown) =>
          process.emitWarning(`slide job ${job.id}: its signals were not recorded (${String(error)})`),
        );
      return summary;
    },
    options.sharedQueue,
  );
  const limiter = new InferenceLimiter(
    options.concurrency ?? SERVE_DEFAULTS.concurrency,
    options.maxWaiting ?? SERVE_DEFAULTS.maxWaiting,
  );
  const service = new PredictionService(
    models,
    store,
    limiter,
    {
      maxPixels,
      maxBytes,
      keepImages: options.keepImages ?? SERVE_DEFAULTS.keepImages,
      ...(options.slideRoot ? { slideRoot: path.resolve(options.slideRoot) } : {}),
      slideMaxBytes: (options.slideMaxGigabytes ?? SERVE_DEFAULTS.slideMaxGigabytes) * 2 ** 30,
    },
    slides,
  );
  await service.slides.recover();
  return { models, service, limiter };
}

/** Fastify's own options: logging, body size, timeouts against slow clients, TLS, the proxy. */
function fastifyOptions(options: ServerOptions, maxBytes: number): FastifyServerOptions {
  const serverOptions: FastifyServerOptions & { https?: object; http?: object } = {
    logger: options.logger ?? false,
    bodyLimit: maxBytes,
    return503OnClosing: true,
    // On shutdown, idle keep-alive sockets close at once; requests in flight still finish.
    forceCloseConnections: 'idle',
    // Slow or silent clients are cut off: headers, the whole request, idle sockets (LIMITS).
    connectionTimeout: LIMITS.idleSocketMs,
    keepAliveTimeout: LIMITS.keepAliveTimeoutMs,
    requestTimeout: LIMITS.requestTimeoutMs,
    http: HTTP_SERVER_OPTIONS,
    clientErrorHandler: answerClientError,
    ...(options.tls ? { https: { ...HTTP_SERVER_OPTIONS, ...options.tls } } : {}),
    // Fastify also takes a hop count here, which its types leave out.
    ...(options.trustProxy !== undefined ? { trustProxy: options.trustProxy as boolean | string } : {}),
  };
  // Typed as the plain HTTP server (the https key is HTTPS's): the routes are the same over HTTPS.
  return serverOptions;
}

export async function buildServer(options: ServerOptions): Promise<PathotypeServer> {
  // Checked before anything is opened: a wrong one is a configuration error, nothing to close.
  const ownOrigin = options.publicOrigin === undefined ? undefined : publicOrigin(options.publicOrigin);
  blockUntrustedDecoders();
  const maxBytes = options.maxBytes ?? SERVE_DEFAULTS.maxMegabytes * 1024 * 1024;
  const maxPixels = options.maxPixels ?? SERVE_DEFAULTS.maxPixels;
  const store = await openStore(options.dataDir, options.database);
  const { models, service, limiter } = await openService(options, store, { maxBytes, maxPixels }).catch(
    async (error: unknown) => {
      await store.close();
      throw error;
    },
  );
  const predictor = models.active().predictor;
  const app = Fastify(fastifyOptions(options, maxBytes));
  capConnectionsPerAddress(app.server);
  app.decorate('pathotype', service);
  await app.register(errorHandling);
  await app.register(origins, {
    ...(ownOrigin ? { publicOrigin: ownOrigin } : {}),
    trustProxy: options.trustProxy !== undefined && options.trustProxy !== false,
    tls: options.tls !== undefined,
  });
  await app.register(slowClients, {
    rate: options.bodyRate ?? {
      bytesPerSecond: LIMITS.bodyBytesPerSecond,
      windowMs: LIMITS.bodyRateWindowMs,
    },
  });
  await registerSecurity(app, {
    store,
    allowAnonymous: options.allowAnonymous ?? false,
    tls: options.tls !== undefined,
    corsOrigins: options.corsOrigins ?? [],
  });
  const routes: PathotypeServer['routes'] = [];
  app.addHook('onRoute', (route) => {
    for (const method of [route.method].flat())
      routes.push({ method, url: route.url, access: route.config?.access ?? 'viewer' });
  });
  await registerRoutes(app, maxBytes);

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
  app.addHook('onClose', async () => {
    await service.close();
    await store.close();
    await models.close();
  });
  return { app, store, predictor, models, limiter, slidesIdle: () => service.slides.idle(), routes };
}
