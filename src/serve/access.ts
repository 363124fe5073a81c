/**
 * One rule for every route: once the server is protected (its first user or key), a request
 * needs a portal session or an API key, and the role its route asks for; only the routes in
 * OPEN_ROUTES answer anyone (the one way to open a route). A route says the role it needs in its
 * config (`access`, default 'viewer') and, when it touches a patient's data, what the audit calls that (`audit`). Requests
 * made with a session cookie that change anything must come from this server's own pages (a
 * same-origin Origin and the session's CSRF token). Registered without encapsulation, before
 * every route, so no route escapes it.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';
import type {} from '@fastify/csrf-protection';
import type {} from '@fastify/session';

import { PathotypeError } from '../errors.js';
import { SESSION_LIMITS } from '../limits.js';
import type { AuditAction } from '../store/audit.js';
import type { ServerStore } from '../store/open.js';
import type { PortalSession } from '../store/sessions.js';
import { narrower, roleAllows, type Role } from '../store/users.js';
import { originOf } from './origin.js';

/** What a route needs: nothing (open), or at least a role. */
export type Access = 'open' | Role;

/** Who is asking. */
export interface Principal {
  kind: 'user' | 'key' | 'anonymous';
  /** The user's or key's id; null for anonymous. */
  id: string | null;
  /** For the audit and the portal: the user's name, or the key's name and prefix. */
  name: string;
  role: Role;
  /**
   * Whom it acts for, for ownership (a slide job's owner, a review's reader, the upload and job
   * bounds per client): a user, and a key acting for a user, are that user; a service key is
   * itself; anonymous is nobody.
   */
  owner: { id: string | null; name: string };
}

/** A signed-in user as a principal. */
export function userPrincipal(user: { id: string; name: string; role: Role }): Principal {
  return {
    kind: 'user',
    id: user.id,
    name: user.name,
    role: user.role,
    owner: { id: user.id, name: user.name },
  };
}

declare module 'fastify' {
  interface FastifyContextConfig {
    /** The role a route needs; only OPEN_ROUTES open a route (the hook below writes 'open'). */
    access?: Access;
    /** The audit's name for what this route does to a patient's data. */
    audit?: AuditAction;
  }
  interface FastifyRequest {
    principal: Principal | null;
    /** The case a request concerns when its URL does not name it (a new upload's id). */
    auditCase: string | null;
  }
  // eslint-disable-next-line @typescript-eslint/no-empty-object-type
  interface Session extends PortalSession {}
}

/**
 * The routes anyone may call, protected or not: health for load balancers, the sign-in page and
 * the files it needs. Everything else needs a session or a key.
 */
export const OPEN_ROUTES: readonly string[] = [
  'GET /healthz',
  'GET /readyz',
  'GET /login',
  'POST /login',
  'GET /static/portal/*',
  // Browsers ask for it on every page, signed in or not; it holds no patient data.
  'GET /favicon.ico',
];

/** Anonymous requests on an open server may do what a pathologist may (as before accounts). */
const ANONYMOUS: Principal = {
  kind: 'anonymous',
  id: null,
  name: 'anonymous',
  role: 'pathologist',
  owner: { id: null, name: 'anonymous' },
};

/** Keys made before roles may what the REST API allowed then: predictions and slides. */
const LEGACY_KEY_ROLE: Role = 'pathologist';

const BEARER = /^Bearer ([A-Za-z0-9_-]{10,200})$/;
const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

export interface AccessOptions {
  store: ServerStore;
  /** Serve anonymous requests even when users or keys exist (serve --allow-anonymous). */
  allowAnonymous: boolean;
}

export function routeKey(method: string, url: string): string {
  return `${method === 'HEAD' ? 'GET' : method} ${url}`;
}

export function isOpenRoute(method: string, url: string): boolean {
  const key = routeKey(method, url);
  return OPEN_ROUTES.some((open) => (open.endsWith('*') ? key.startsWith(open.slice(0, -1)) : key === open));
}

/** A page a browser asks for: refused by a redirect to the sign-in page, not a JSON error. */
function wantsPage(request: FastifyRequest): boolean {
  return (
    request.method === 'GET' &&
    !request.url.startsWith('/api/') &&
    (request.headers.accept ?? '').includes('text/html')
  );
}

/** The key a request carries: a well-formed Bearer token or an x-api-key header, not both. */
function presentedKey(request: FastifyRequest): string | undefined {
  const authorization = request.headers.authorization;
  const alternative = request.headers['x-api-key'];
  if (authorization !== undefined && alternative !== undefined)
    throw new PathotypeError(
      'ERR_UNAUTHORIZED',
      'send one credential: Authorization: Bearer KEY or x-api-key',
    );
  if (authorization !== undefined) {
    const match = BEARER.exec(authorization);
    if (!match)
      throw new PathotypeError(
        'ERR_UNAUTHORIZED',
        'the Authorization header must be "Bearer KEY" with an API key',
      );
    return match[1];
  }
  if (alternative === undefined) return undefined;
  if (typeof alternative !== 'string' || !/^[A-Za-z0-9_-]{10,200}$/.test(alternative))
    throw new PathotypeError('ERR_UNAUTHORIZED', 'the x-api-key header is not an API key');
  return alternative;
}

async function keyPrincipal(store: ServerStore, key: string): Promise<Principal> {
  const record = await store.keys.verify(key);
  if (!record) throw new PathotypeError('ERR_UNAUTHORIZED', 'the API key is unknown, revoked or expired');
  let role = record.role ?? LEGACY_KEY_ROLE;
  const name = `${record.name} (${record.prefix}…)`;
  let owner = { id: record.id, name };
  if (record.userId) {
    const user = await store.users.get(record.userId);
    if (!user || user.disabledAt)
      throw new PathotypeError('ERR_UNAUTHORIZED', "the API key's user is disabled");
    role = narrower(user.role, role);
    owner = { id: user.id, name: user.name };
  }
  return { kind: 'key', id: record.id, name, role, owner };
}

/** The signed-in user of a live session; a session past its timeouts, or of a disabled user, ends. */
async function sessionPrincipal(store: ServerStore, request: FastifyRequest): Promise<Principal | null> {
  const session = request.session;
  if (!session.userId) return null;
  const now = Date.now();
  const user = await store.users.get(session.userId);
  const createdAt = session.createdAt ?? 0;
  const expired =
    now - (session.lastSeen ?? 0) > SESSION_LIMITS.idleMinutes * 60_000 ||
    now - createdAt > SESSION_LIMITS.absoluteHours * 3_600_000;
  if (!user || user.disabledAt || Date.parse(user.passwordChangedAt) > createdAt || expired) {
    await session.destroy();
    return null;
  }
  if (now - (session.lastSeen ?? 0) > SESSION_LIMITS.touchSeconds * 1000) session.lastSeen = now;
  return userPrincipal(user);
}

/** The origin a Referer names; a Referer that is not a URL names none (and is refused, not a 500). */
export function refererOrigin(referer: string | undefined): string {
  return originOf(referer) ?? '';
}

/** The origin a request says it comes from, quoted for a message (it is the sender's text). */
function quotedOrigin(value: string | undefined): string {
  return value ? JSON.stringify(value.slice(0, 200)) : 'an unknown origin';
}

/**
 * A state-changing request on a session cookie must come from this server's own pages: its
 * Origin (or else its Referer's) is one of the server's own (origin.ts), never judged by Host.
 */
function checkOrigin(request: FastifyRequest): void {
  const sent = request.headers.origin ?? request.headers.referer;
  const origin =
    request.headers.origin !== undefined
      ? originOf(request.headers.origin)
      : refererOrigin(request.headers.referer);
  if (!origin || !request.server.ownOrigins(request).includes(origin))
    throw new PathotypeError(
      'ERR_CSRF',
      `a request from ${quotedOrigin(sent)} may not act for a signed-in user`,
    );
}

/** Origin checks for the sign-in form, which has no session yet: an Origin, if sent, is ours. */
export function checkSameOrigin(request: FastifyRequest): void {
  const sent = request.headers.origin;
  if (sent === undefined) return;
  const origin = originOf(sent);
  if (!origin || !request.server.ownOrigins(request).includes(origin))
    throw new PathotypeError('ERR_CSRF', `a sign-in from ${quotedOrigin(sent)} is refused`);
}

function accessControl(app: FastifyInstance, options: AccessOptions): void {
  const { store } = options;
  let protectedMode = false;
  app.decorateRequest('principal', null);
  app.decorateRequest('auditCase', null);

  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    const open = methods.every((m) => isOpenRoute(m, route.url));
    // A route cannot open itself: only OPEN_ROUTES can, so the list is the whole truth.
    if (!open && route.config?.access === 'open')
      throw new Error(`${methods.join(',')} ${route.url} says access 'open' but is not in OPEN_ROUTES`);
    route.config = { ...route.config, access: open ? 'open' : (route.config?.access ?? 'viewer') };
  });

  app.addHook('onRequest', async (request, reply) => {
    const access = request.routeOptions.config.access;
    // Not found: nothing to protect; the 404 handler answers.
    if (access === undefined || access === 'open') return;
    const key = presentedKey(request);
    let principal = key ? await keyPrincipal(store, key) : await sessionPrincipal(store, request);
    if (!principal) {
      protectedMode ||= await store.settings.isProtected();
      if (protectedMode && !options.allowAnonymous) {
        if (wantsPage(request)) return reply.redirect(`/login?next=${encodeURIComponent(request.url)}`, 302);
        throw new PathotypeError(
          'ERR_UNAUTHORIZED',
          'sign in, or send a valid API key (Authorization: Bearer KEY)',
        );
      }
      principal = ANONYMOUS;
    }
    request.principal = principal;
    if (!roleAllows(principal.role, access))
      throw new PathotypeError(
        'ERR_FORBIDDEN',
        `this needs the ${access} role; ${principal.name} is ${principal.role}`,
      );
    // Refused before its body is read; the token, which a form sends in its body, is checked below.
    if (principal.kind === 'user' && !SAFE_METHODS.has(request.method)) checkOrigin(request);
  });

  // The session's CSRF token (@fastify/csrf-protection), once the body is parsed; a bad one is its 403.
  app.addHook('preHandler', (request, reply, done) => {
    if (request.principal?.kind === 'user' && !SAFE_METHODS.has(request.method))
      app.csrfProtection(request, reply, done);
    else done();
  });

  // Written before the answer leaves, so what a client received is on record.
  app.addHook('onSend', async (request, reply) => {
    const action = request.routeOptions.config.audit;
    if (!action) return;
    const principal = request.principal;
    const params = request.params as { id?: unknown } | undefined;
    await store.audit.append({
      actor: principal?.name ?? 'anonymous',
      actorKind: principal?.kind ?? 'anonymous',
      action,
      caseId: request.auditCase ?? (typeof params?.id === 'string' ? params.id : null),
      target: `${request.method} ${request.url.split('?')[0] ?? ''}`.slice(0, 500),
      status: reply.statusCode,
      address: request.ip,
      userAgent: (request.headers['user-agent'] ?? '').slice(0, 300),
    });
  });
}

export default fp(accessControl, { name: 'pathotype-access' });
