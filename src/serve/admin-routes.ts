/**
 * The administrators' pages: who read or changed which patient's data (the audit). Their own
 * plugin, so what only an admin may see is registered in one place.
 */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { auditPage } from './portal.js';
import { html, pageContext } from './portal-routes.js';
import { AUDIT_QUERY } from './schemas.js';

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
}
