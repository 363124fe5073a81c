/** The administrators' pages: the audit, and the users with the sign-in locks on their names. */
import { escapeHtml } from '../html.js';
import { USER_LIMITS } from '../limits.js';
import type { AuditEntry } from '../store/audit.js';
import type { UserRecord } from '../store/users.js';
import { layout, type PageContext } from './portal.js';

/** The audit as an admin reads it: newest first, filtered by user, case and time. */
export function auditPage(
  ctx: PageContext,
  entries: readonly AuditEntry[],
  filter: { user: string; case: string; since: string },
): string {
  const rows = entries
    .map(
      (e) =>
        `<tr><td>${escapeHtml(e.at.replace('T', ' ').slice(0, 19))}</td><td>${escapeHtml(e.actor)} <span class="muted">(${escapeHtml(e.actorKind)})</span></td><td>${escapeHtml(e.action)}</td><td>${e.caseId ? `<code>${escapeHtml(e.caseId.slice(0, 8))}</code>` : ''}</td><td>${e.status}</td><td>${escapeHtml(e.address)}</td></tr>`,
    )
    .join('');
  return layout(
    ctx,
    'Audit',
    `<h1>Audit</h1>
<form class="panel" method="get" action="/admin/audit" role="search">
<label>User <input name="user" value="${escapeHtml(filter.user)}"></label>
<label>Case <input name="case" value="${escapeHtml(filter.case)}"></label>
<label>Since <input name="since" value="${escapeHtml(filter.since)}" placeholder="2026-12-01T00:00"></label>
<button type="submit">Filter</button></form>
<div class="panel"><table><thead><tr><th scope="col">When (UTC)</th><th scope="col">Who</th><th scope="col">What</th><th scope="col">Case</th><th scope="col">Status</th><th scope="col">From</th></tr></thead>
<tbody>${rows || '<tr><td colspan="6">Nothing recorded.</td></tr>'}</tbody></table></div>`,
  );
}

/** The users, each with its recent failed sign-ins and a button that lifts their lock. */
export function usersPage(ctx: PageContext, users: readonly (UserRecord & { failures: number })[]): string {
  const csrf = `<input type="hidden" name="_csrf" value="${escapeHtml(ctx.csrfToken ?? '')}">`;
  const rows = users
    .map(
      (u) =>
        `<tr><td>${escapeHtml(u.name)}</td><td>${escapeHtml(u.role)}</td><td>${u.disabledAt ? 'disabled' : 'active'}</td><td>${u.failures}</td><td>${
          u.failures > 0
            ? `<form method="post" action="/admin/users/${escapeHtml(u.id)}/unlock">${csrf}<button type="submit">Lift the lock</button></form>`
            : ''
        }</td></tr>`,
    )
    .join('');
  return layout(
    ctx,
    'Users',
    `<h1>Users</h1>
<p class="muted">Failed sign-ins of the last ${USER_LIMITS.lockMinutes} minutes, from every address. An address that failed ${USER_LIMITS.failedLogins} times for a name waits before it may try again; lifting the lock clears the name's failures everywhere. Accounts are added, disabled and reset with <code>pathotype users</code>.</p>
<div class="panel"><table><thead><tr><th scope="col">Name</th><th scope="col">Role</th><th scope="col">State</th><th scope="col">Failed sign-ins</th><th scope="col"></th></tr></thead>
<tbody>${rows || '<tr><td colspan="5">No users.</td></tr>'}</tbody></table></div>`,
  );
}
