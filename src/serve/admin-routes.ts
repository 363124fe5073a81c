/**
 * The administrators' pages: who read or changed which patient's data (the audit), the users
 * with the sign-in locks on their names (which an admin lifts), the agreement between readers
 * and with the model, the model versions (compare, promote, roll back) and drift. Their own
 * plugin, so what only an admin may see and do is registered in one place.
 */
import type { FastifyInstance } from 'fastify';
import type { JsonSchemaToTsProvider } from '@fastify/type-provider-json-schema-to-ts';

import { PathotypeError } from '../errors.js';
import { auditPage, usersPage } from './admin-pages.js';
import { html, pageContext } from './portal-routes.js';
import { AUDIT_QUERY, ID_PARAMS } from './schemas.js';
import { agreementReport } from './agreement-report.js';
import type { ComparisonResult } from './challenger.js';
import { driftReport } from './drift.js';
import { driftPage, modelsPage } from './model-pages.js';
import { DRIFT_QUERY } from './models-api.js';
import { agreementPage } from './review-loop-pages.js';
import type { PredictionService } from './service.js';

/** Rows the audit page shows at most (the CLI reads any number). */
const AUDIT_PAGE_ROWS = 500;

export function adminRoutes(app: FastifyInstance): void {
  const admin = app.withTypeProvider<JsonSchemaToTsProvider>();
  const service = app.pathotype;
  const { store } = service;
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
  admin.get(
    '/admin/agreement',
    { schema: { hide: true }, config: { access: 'admin', audit: 'reviews.agreement' } },
    async (request, reply) =>
      html(
        reply,
        agreementPage(pageContext(request, reply), await agreementReport(store, service.manifest.classes)),
      ),
  );
  admin.get(
    '/admin/models',
    { schema: { hide: true }, config: { access: 'admin', audit: 'models.read' } },
    async (request, reply) => html(reply, modelsPage(pageContext(request, reply), await modelViews(service))),
  );
  admin.get(
    '/admin/drift',
    { schema: { hide: true, querystring: DRIFT_QUERY }, config: { access: 'admin', audit: 'drift.read' } },
    async (request, reply) => {
      await service.models.refresh();
      const modelId = request.query.model ?? service.modelId;
      const report = await driftReport(store, modelId, service.manifestOf(modelId), request.query.weeks);
      const models = service.models.all().map((m) => m.id);
      return html(reply, driftPage(pageContext(request, reply), report, models));
    },
  );
}

/** Every name's versions, each with its newest comparison against the version active now. */
async function modelViews(service: PredictionService) {
  await service.models.refresh();
  return Promise.all(
    service.models.names().map(async (name) => {
      const active = service.models.active(name);
      const history = await service.store.models.history(name);
      const comparisons = await service.store.models.comparisons<ComparisonResult>(name);
      const versions = service.models
        .all()
        .filter((m) => m.name === name)
        .map((m) => ({
          id: m.id,
          version: m.version,
          manifest: m.predictor.manifest,
          active: m.id === active.id,
          comparison: comparisons.find((c) => c.challenger === m.id && c.champion === active.id) ?? null,
          wasActive: history.some((p) => p.modelId === m.id),
        }));
      return { name, versions, history };
    }),
  );
}
