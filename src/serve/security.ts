/**
 * The server's security plugins, in the order they must run: cookies and server-side sessions
 * (@fastify/session, its store in the server's database), CSRF tokens on the session
 * (@fastify/csrf-protection), security headers with a Content-Security-Policy that allows only
 * this server's own scripts (@fastify/helmet), CORS only for the origins named (@fastify/cors),
 * rate limits counted in the database (@fastify/rate-limit), and the one access rule.
 */
import cookie from '@fastify/cookie';
import cors from '@fastify/cors';
import csrf from '@fastify/csrf-protection';
import helmet from '@fastify/helmet';
import rateLimit from '@fastify/rate-limit';
import session from '@fastify/session';
import type { FastifyInstance, FastifyRequest, Session } from 'fastify';

import { PathotypeError } from '../errors.js';
import type { ServerStore } from '../store/open.js';
import { rateLimitStoreOn } from '../store/rate-limits.js';
import { SessionStore } from '../store/sessions.js';
import { API_RATE, LIMITS, SESSION_LIMITS } from '../limits.js';
import access from './access.js';

export interface SecurityOptions {
  store: ServerStore;
  allowAnonymous: boolean;
  /** Served over HTTPS directly: cookies are Secure and HSTS is sent. */
  tls: boolean;
  /** Origins allowed to call the REST API from a browser; none: CORS off. */
  corsOrigins: readonly string[];
}

/** The key, user or address a rate limit counts against. */
function limitedBy(request: FastifyRequest): string {
  const principal = request.principal;
  return principal?.id ? `${principal.kind}:${principal.id}` : `ip:${request.ip}`;
}

export async function registerSecurity(app: FastifyInstance, options: SecurityOptions): Promise<void> {
  const { store } = options;
  await app.register(cookie);
  const sessions = new SessionStore<Session>(store.db, SESSION_LIMITS.absoluteHours * 3_600_000);
  await app.register(session, {
    secret: await store.settings.sessionSecret(),
    cookieName: 'pathotype_session',
    store: sessions,
    saveUninitialized: false,
    cookie: {
      httpOnly: true,
      sameSite: 'strict',
      secure: options.tls,
      path: '/',
      maxAge: SESSION_LIMITS.absoluteHours * 3_600_000,
    },
  });
  await sessions.removeExpired();
  await app.register(csrf, { sessionPlugin: '@fastify/session' });
  await app.register(helmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        scriptSrcAttr: ["'none'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:', 'blob:'],
        connectSrc: ["'self'"],
        fontSrc: ["'self'", 'data:'],
        objectSrc: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
        frameAncestors: ["'none'"],
      },
    },
    frameguard: { action: 'deny' },
    referrerPolicy: { policy: 'same-origin' },
    hsts: options.tls ? { maxAge: 31_536_000, includeSubDomains: true } : false,
  });
  if (options.corsOrigins.length > 0)
    await app.register(cors, {
      origin: [...options.corsOrigins],
      allowedHeaders: ['authorization', 'content-type'],
    });
  // The access rule before the rate limit's hooks, so a limit counts the key or user it knows.
  await app.register(access, { store, allowAnonymous: options.allowAnonymous });
  app.addHook('onRoute', (route) => {
    if (route.url.startsWith('/api/') && route.config?.rateLimit === undefined)
      route.config = { ...route.config, rateLimit: { ...API_RATE, keyGenerator: limitedBy } };
  });
  await app.register(rateLimit, {
    global: false,
    hook: 'preHandler',
    store: rateLimitStoreOn(store.db),
    errorResponseBuilder: (_request, context) =>
      new PathotypeError(
        'ERR_RATE_LIMITED',
        `too many requests: retry in ${Math.ceil(context.ttl / 1000)} s`,
      ),
  });
  // HTML forms (the sign-in and sign-out forms), parsed by Node's own URLSearchParams.
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string', bodyLimit: LIMITS.formBytes },
    (_request, body, done) => done(null, Object.fromEntries(new URLSearchParams(body as string))),
  );
}
