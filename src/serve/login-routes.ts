/**
 * Signing in and out of the portal. A sign-in checks the password (the user store throttles
 * failures by name and address, known names and unknown alike), starts a new session (a new
 * id, so one planted before cannot be ridden) and returns to the page asked for; signing out
 * ends the session on every server.
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type {} from '@fastify/rate-limit';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { PathotypeError } from '../errors.js';
import { LIMITS, LOGIN_RATE } from '../limits.js';
import { checkSameOrigin, userPrincipal } from './access.js';
import { capPerClient } from './slow-clients.js';
import { loginPage } from './portal.js';
import { LOGIN_BODY, LOGIN_QUERY } from './schemas.js';

/** C0 and C1 controls (CR, LF, TAB among them) and DEL: never in a Location header. */
// eslint-disable-next-line no-control-regex -- matching controls is the point
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/u;

/** Where a sign-in may return to: a path on this server without control characters, never another site. */
export function safeNext(next: string | undefined): string {
  return next &&
    next.startsWith('/') &&
    !next.startsWith('//') &&
    !next.startsWith('/\\') &&
    !CONTROL.test(next)
    ? next
    : '/';
}

export function loginRoutes(app: FastifyInstance): void {
  const api = app.withTypeProvider<JsonSchemaToTsProvider>();
  const { store } = app.pathotype;

  api.get('/login', { schema: { hide: true, querystring: LOGIN_QUERY } }, (request, reply) =>
    reply
      .type('text/html; charset=utf-8')
      .header('cache-control', 'no-store')
      .send(loginPage({ next: safeNext(request.query.next) })),
  );

  api.post(
    '/login',
    {
      schema: { hide: true, body: LOGIN_BODY },
      config: {
        rateLimit: { ...LOGIN_RATE, keyGenerator: (request: FastifyRequest) => request.ip },
        audit: 'login',
      },
      onRequest: capPerClient(
        LIMITS.signInsPerAddress,
        (request) => request.ip,
        (cap) =>
          new PathotypeError('ERR_RATE_LIMITED', `${cap} sign-ins from this address are in progress already`),
      ),
    },
    async (request, reply) => {
      checkSameOrigin(request);
      const { name, password } = request.body;
      const next = safeNext(request.body.next);
      try {
        const user = await store.users.signIn(name, password, request.ip);
        await request.session.regenerate();
        const now = Date.now();
        request.session.userId = user.id;
        request.session.createdAt = now;
        request.session.lastSeen = now;
        request.principal = userPrincipal(user);
        return await reply.redirect(next, 303);
      } catch (error) {
        if (!(error instanceof PathotypeError) || !['ERR_LOGIN', 'ERR_LOCKED'].includes(error.code))
          throw error;
        // The audit names the account only if it exists: a password typed into the name field
        // must not be kept for ever in an append-only table.
        const account = await store.users.find(name);
        const actor = account?.name ?? 'unknown name';
        request.principal = {
          kind: 'anonymous',
          id: null,
          name: actor,
          role: 'viewer',
          owner: { id: null, name: actor },
        };
        return reply
          .code(error.status)
          .type('text/html; charset=utf-8')
          .header('cache-control', 'no-store')
          .send(loginPage({ next, error: error.message, name: name.slice(0, 64) }));
      }
    },
  );

  api.post(
    '/logout',
    { schema: { hide: true }, config: { access: 'viewer', audit: 'logout' } },
    async (request, reply) => {
      await request.session.destroy();
      return reply.redirect('/login', 303);
    },
  );
}
