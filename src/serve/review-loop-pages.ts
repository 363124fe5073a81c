/**
 * The review loop's pages: the review queue a pathologist works through, and the agreement page
 * an admin audits double reading on (its setting, kappas with intervals, confusion matrices,
 * the disagreements waiting for a third reader). Actions go to the REST API from
 * assets/portal/admin.js with the page's CSRF token.
 */
import type { AgreementSummary } from '../evaluate/agreement.js';
import { percent as pct } from '../format.js';
import { escapeHtml } from '../html.js';
import type { AgreementReport } from './agreement-report.js';
import { layout, type PageContext } from './portal.js';
import { QUEUE_STATUSES, type QueueFilter, type QueueItem } from './review-queue.js';

export const ADMIN_SCRIPT = '/static/portal/admin.js';

const STATUS_LABELS: Record<QueueItem['status'], string> = {
  unreviewed: 'not reviewed',
  'second-reading': 'needs a second reader',
  disagreement: 'readers disagree: needs a third',
  settled: 'settled',
};

const caseLink = (kind: string, id: string): string =>
  kind === 'slide' ? `/slides/${encodeURIComponent(id)}` : `/cases/${encodeURIComponent(id)}`;

function queueRow(item: QueueItem, verdict: string): string {
  const atypical =
    item.atypicality === null
      ? '<span class="muted">unknown</span>'
      : `${item.unlike ? '<strong>unlike the training data</strong>, ' : ''}percentile ${item.atypicality}`;
  return `<tr data-case="${escapeHtml(item.caseId)}"><td><a href="${caseLink(item.caseKind, item.caseId)}">${escapeHtml(item.fileName)}</a>${item.caseKind === 'slide' ? ' <span class="muted">(slide)</span>' : ''}</td><td>${verdict}</td><td>${item.margin === null ? '<span class="muted">unknown</span>' : item.margin.toFixed(3)}</td><td>${atypical}</td><td>${escapeHtml(STATUS_LABELS[item.status])}</td><td>${escapeHtml(item.modelId)}</td><td>${escapeHtml(item.createdAt.replace('T', ' ').slice(0, 16))}</td></tr>`;
}

export function queuePage(
  ctx: PageContext,
  queue: { total: number; items: { item: QueueItem; verdict: string }[] },
  filter: QueueFilter,
  models: readonly string[],
): string {
  const options = ['', ...models]
    .map(
      (m) =>
        `<option value="${escapeHtml(m)}"${m === (filter.model ?? '') ? ' selected' : ''}>${m ? escapeHtml(m) : 'all models'}</option>`,
    )
    .join('');
  const statuses = QUEUE_STATUSES.map(
    (s) =>
      `<option value="${s}"${s === filter.status ? ' selected' : ''}>${s === 'needed' ? 'every case needing a reader' : escapeHtml(STATUS_LABELS[s])}</option>`,
  ).join('');
  const rows = queue.items.map(({ item, verdict }) => queueRow(item, verdict)).join('');
  return layout(
    ctx,
    'Review queue',
    `<h1>Review queue</h1>
<form class="panel" role="search" method="get" action="/reviews">
<label>Model <select name="model">${options}</select></label>
<label>From <input name="since" type="date" value="${escapeHtml(filter.since?.slice(0, 10) ?? '')}"></label>
<label>Until <input name="until" type="date" value="${escapeHtml(filter.until?.slice(0, 10) ?? '')}"></label>
<label>Status <select name="status">${statuses}</select></label>
<button type="submit">Filter</button></form>
<div class="panel"><p id="queue-count">${queue.total} case${queue.total === 1 ? '' : 's'} waiting for you, the most informative first: inputs unlike the training data, then the smallest calibrated margin (the model's top class minus the next; unknown last), then the newest.</p>
<table id="queue"><thead><tr><th scope="col">Case</th><th scope="col">Model's answer</th><th scope="col">Margin</th><th scope="col">Atypicality</th><th scope="col">Status</th><th scope="col">Model</th><th scope="col">Received (UTC)</th></tr></thead>
<tbody>${rows || '<tr><td colspan="7">Nothing waiting for you.</td></tr>'}</tbody></table></div>`,
  );
}

function interval(v: { estimate: number; low: number; high: number }, asPercent = false): string {
  const f = (x: number): string => (asPercent ? pct(x) : x.toFixed(2));
  return `${f(v.estimate)} (95% CI ${f(v.low)} to ${f(v.high)})`;
}

function confusionTable(s: AgreementSummary, rows: string, cols: string): string {
  const head = s.labels.map((l) => `<th scope="col">${escapeHtml(l)}</th>`).join('');
  const body = s.confusion
    .map(
      (row, i) =>
        `<tr><th scope="row">${escapeHtml(s.labels[i] ?? '')}</th>${row.map((n) => `<td>${n}</td>`).join('')}</tr>`,
    )
    .join('');
  return `<table class="confusion"><caption>Rows: ${escapeHtml(rows)}; columns: ${escapeHtml(cols)}</caption><thead><tr><th></th>${head}</tr></thead><tbody>${body}</tbody></table>`;
}

function summaryBlock(
  id: string,
  title: string,
  s: AgreementSummary | null,
  rows: string,
  cols: string,
): string {
  if (!s)
    return `<section class="panel" id="${id}"><h2>${escapeHtml(title)}</h2><p>No pairs yet.</p></section>`;
  return `<section class="panel" id="${id}"><h2>${escapeHtml(title)}</h2>
<p>Cohen's kappa <strong class="kappa">${interval(s.kappa)}</strong>; agreeing ${interval(s.agreement, true)}; ${s.pairs} pairs over ${s.groups} patients (a case without a patient counts as its own; the interval is a bootstrap over them).</p>
${confusionTable(s, rows, cols)}</section>`;
}

export function agreementPage(ctx: PageContext, report: AgreementReport): string {
  const byModel = report.byModel
    .map(
      ({ modelId, summary }) =>
        `<tr><td>${escapeHtml(modelId)}</td><td>${summary ? interval(summary.kappa) : '–'}</td><td>${summary ? pct(summary.agreement.estimate) : '–'}</td><td>${summary?.pairs ?? 0}</td></tr>`,
    )
    .join('');
  const disagreements = report.disagreements
    .map(
      (d) =>
        `<li><a href="${caseLink(d.caseKind, d.caseId)}"><code>${escapeHtml(d.caseId.slice(0, 8))}</code></a>${d.patient ? ` (patient ${escapeHtml(d.patient)})` : ''}: ${d.opinions.map((o) => `${escapeHtml(o.reviewer)} ${escapeHtml(o.label)}`).join(', ')}</li>`,
    )
    .join('');
  return layout(
    ctx,
    'Agreement',
    `<h1>Agreement between readers and with the model</h1>
<form class="panel" id="readers-form" data-api="/api/v1/reviews/settings" data-method="PUT">
<label>Readers each case needs <select name="readers" id="readers">
<option value="1"${report.required === 1 ? ' selected' : ''}>one</option>
<option value="2"${report.required === 2 ? ' selected' : ''}>two, independent</option>
</select></label> <button type="submit">Save</button> <span class="form-status" role="status"></span>
<p class="muted">With two, a reader sees another's review of a case only once the case has its two readers; disagreements go to a third.</p></form>
<p>${report.cases} reviewed cases.</p>
${summaryBlock('between-readers', 'Between the first and second reader of each case', report.readers, 'first reader', 'second reader')}
${summaryBlock('with-model', 'Between each reader and the model that answered', report.model, 'reader', 'model')}
<section class="panel"><h2>By model version</h2><table id="by-model"><thead><tr><th scope="col">Version</th><th scope="col">Kappa, reader against model</th><th scope="col">Agreeing</th><th scope="col">Pairs</th></tr></thead><tbody>${byModel || '<tr><td colspan="4">No reviews yet.</td></tr>'}</tbody></table></section>
<section class="panel" id="disagreements"><h2>Disagreements waiting for a third reader</h2>${disagreements ? `<ul>${disagreements}</ul>` : '<p>None.</p>'}<p><a href="/reviews?status=disagreement">In the review queue</a></p></section>`,
    { scripts: [ADMIN_SCRIPT] },
  );
}
