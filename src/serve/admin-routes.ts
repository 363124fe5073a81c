/**
 * The administrators' pages: who read or changed which patient's data (the audit), and the
 * users with the sign-in locks on their names, which an admin lifts. Their own plugin, so what
 * only an admin may see and do is registered in one place.
 */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { PathotypeError } from '../errors.js';
import { auditPage, usersPage } from './admin-pages.js';
import { html, pageContext } from './portal-routes.js';
import { AUDIT_QUERY, ID_PARAMS } from './schemas.js';

/** Rows the audit page shows at most (the CLI reads any number). */
const AUDIT_PAGE_ROWS = 500;

export function adminRoutes(app: FastifyInstance): void {
  const admin = app.withTypeProvider<JsonSchemaToTsProvider>();
  const { store } = app.pathotype;
  admin.get(
    '/admin/audit',
    { schema: { hide: true, querystring: AUDIT_QUERY }, config: { access: 'admin', audit: 'audit.read' } },
    async (request, reply) => {
      const { user, case: caseId, since } = request.query;
      const entries = await store.audit.list({
        ...(user ? { actor: user } : {}),
        ...(caseId ? { caseId } : {}),
        ...(since ? { since } : {}),
        limit: AUDIT_PAGE_ROWS,
      });
      return html(reply, auditPage(pageContext(request, reply), entries, { user, case: caseId, since }));
    },
  );
  admin.get(
    '/admin/users',
    { schema: { hide: true }, config: { access: 'admin', audit: 'users.list' } },
    async (request, reply) => {
      const users = await Promise.all(
        (await store.users.list()).map(async (u) => ({
          ...u,
          failures: await store.users.recentFailures(u),
        })),
      );
      return html(reply, usersPage(pageContext(request, reply), users));
    },
  );
  admin.post(
    '/admin/users/:id/unlock',
    { schema: { hide: true, params: ID_PARAMS }, config: { access: 'admin', audit: 'user.unlock' } },
    async (request, reply) => {
      const user = await store.users.get(request.params.id);
      if (!user) throw new PathotypeError('ERR_NOT_FOUND', `no user ${request.params.id}`);
      await store.users.unlock(user.name);
      return reply.redirect('/admin/users', 303);
    },
  );
}
