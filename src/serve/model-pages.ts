/**
 * The admins' model pages: the versions of each name with their comparisons and the promote
 * (or roll back) action, and the drift page (inputs unlike the training data, and the scale,
 * stain and focus of the inputs against the training images', week by week).
 */
import { percent as pct } from '../format.js';
import { escapeHtml } from '../html.js';
import type { ModelManifest } from '../model/package.js';
import type { Promotion } from '../store/model-versions.js';
import type { Comparison } from './challenger.js';
import { DRIFT_MEASURES, type DriftMeasure, type DriftReport } from './drift.js';
import { layout, type PageContext } from './portal.js';
import { ADMIN_SCRIPT } from './review-loop-pages.js';

export interface VersionView {
  id: string;
  version: number;
  manifest: ModelManifest;
  active: boolean;
  /** Its newest comparison with the version active now. */
  comparison: Comparison | null;
  /** It was active before: promoting it is a rollback. */
  wasActive: boolean;
}

const points = (v: number): string => `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}`;

function comparisonText(c: Comparison): string {
  const r = c.result;
  const left = `left out: ${r.excluded.trainedOn} a package trained on, ${r.excluded.unsettled} not settled, ${r.excluded.imageNotKept} without a kept image, ${r.excluded.notAClass} not one of the classes`;
  const unknown = r.trainingSetUnknown.length
    ? `; <strong>${r.trainingSetUnknown.map(escapeHtml).join(', ')} do${r.trainingSetUnknown.length === 1 ? 'es' : ''} not record what it trained on</strong>, so its training cases could not be left out`
    : '';
  if (!r.difference || r.challengerAccuracy === null || r.championAccuracy === null)
    return `Compared ${escapeHtml(c.createdAt.slice(0, 16).replace('T', ' '))} UTC: no reviewed case to compare on (${left}${unknown}).`;
  return `Compared ${escapeHtml(c.createdAt.slice(0, 16).replace('T', ' '))} UTC by ${escapeHtml(c.actor)} on <strong>${r.cases} reviewed cases of ${r.patients} patients</strong>: ${escapeHtml(c.challenger)} ${pct(r.challengerAccuracy)} against ${escapeHtml(c.champion)} ${pct(r.championAccuracy)}, difference <strong class="difference">${points(r.difference.estimate)} points (95% CI ${points(r.difference.low)} to ${points(r.difference.high)})</strong>, paired bootstrap over patients; right only by the challenger ${r.onlyChallenger}, only by the active version ${r.onlyChampion} (${left}${unknown}).`;
}

function versionRow(name: string, v: VersionView): string {
  const cv = v.manifest.metrics.crossValidation as { imageAccuracy?: number } | undefined;
  const reference = v.manifest.reference
    ? `${v.manifest.reference.atypicality.images} ${v.manifest.reference.atypicality.unit ?? 'images'}, ${v.manifest.reference.atypicality.patients} patients`
    : 'none: its inputs\u2019 atypicality is unknown';
  const form = (action: 'compare' | 'promote', label: string): string =>
    `<form class="inline" data-api="/api/v1/models/${encodeURIComponent(name)}/${action}" data-working="${action === 'compare' ? 'Comparing on the reviewed cases…' : 'Promoting…'}"><input type="hidden" name="version" value="${v.version}"><button type="submit">${label}</button> <span class="form-status" role="status"></span></form>`;
  const actions = v.active
    ? '<strong>active</strong>'
    : v.wasActive
      ? form('promote', `Roll back to v${v.version}`)
      : `${form('compare', 'Compare with the active version')}${v.comparison ? form('promote', `Promote v${v.version}`) : ' <span class="muted">promote after its comparison</span>'}`;
  return `<tr id="version-${escapeHtml(v.id)}" data-active="${v.active}"><td>${escapeHtml(v.id)}</td><td>${escapeHtml(v.manifest.createdAt.slice(0, 16).replace('T', ' '))}</td><td>${cv?.imageAccuracy === undefined ? '–' : pct(cv.imageAccuracy)}</td><td>${reference}</td><td>${actions}</td></tr>${
    v.comparison && !v.active
      ? `<tr><td colspan="5" class="comparison">${comparisonText(v.comparison)}</td></tr>`
      : ''
  }`;
}

export function modelsPage(
  ctx: PageContext,
  names: readonly { name: string; versions: VersionView[]; history: Promotion[] }[],
): string {
  const sections = names
    .map(({ name, versions, history }) => {
      const rows = versions.map((v) => versionRow(name, v)).join('');
      const past = history
        .map(
          (p) =>
            `<li>${escapeHtml(p.at.slice(0, 16).replace('T', ' '))} UTC: ${escapeHtml(p.modelId)} made active by ${escapeHtml(p.actor)}${p.previous ? ` (was ${escapeHtml(p.previous)})` : ''}${p.comparisonId ? ' after its comparison' : p.previous ? ', a rollback' : ''}</li>`,
        )
        .join('');
      return `<section class="panel" id="model-${escapeHtml(name)}"><h2>${escapeHtml(name)}</h2>
<table><thead><tr><th scope="col">Version</th><th scope="col">Made (UTC)</th><th scope="col">Cross-validated</th><th scope="col">Training reference</th><th scope="col"></th></tr></thead><tbody>${rows}</tbody></table>
<h3>Promotions</h3><ol class="promotions">${past}</ol></section>`;
    })
    .join('');
  return layout(
    ctx,
    'Models',
    `<h1>Model versions</h1>
<p>One version of each name answers (the active one). A challenger is compared with it on the reviewed cases neither trained on before it may be promoted; rolling back to an earlier version is the same action.</p>${sections}`,
    { scripts: [ADMIN_SCRIPT] },
  );
}

const MEASURE_NAMES: Record<DriftMeasure, string> = {
  scale: 'Scale (of the 1388×1040 release)',
  haematoxylin: 'Haematoxylin density',
  eosin: 'Eosin density',
  focus: 'Focus',
};

export function driftPage(ctx: PageContext, report: DriftReport, models: readonly string[]): string {
  const options = models
    .map(
      (m) =>
        `<option value="${escapeHtml(m)}"${m === report.modelId ? ' selected' : ''}>${escapeHtml(m)}</option>`,
    )
    .join('');
  const range = (q: number[] | null | undefined): string =>
    q ? `${q[2]}–${q[4]} (median ${q[3]}; 1st–99th percentile ${q[0]}–${q[q.length - 1]})` : 'unknown';
  const unit = report.training?.unit ?? 'images';
  const training = report.training
    ? `<tr><th scope="row">Training ${report.training.unit} (${report.training.images}, ${report.training.patients} patients)</th><td>–</td>${DRIFT_MEASURES.map((m) => `<td>${range(report.training?.[m])}</td>`).join('')}</tr>`
    : '';
  const rows = report.weeks
    .map((w) => {
      const share = w.cases - w.unknown > 0 ? w.unlike / (w.cases - w.unknown) : null;
      const cells = DRIFT_MEASURES.map((m) => {
        const s = w.measures[m];
        return `<td>${s ? `${s.median} (${s.low}–${s.high})${s.outside === null ? '' : `; ${pct(s.outside)} outside`}` : '–'}</td>`;
      }).join('');
      return `<tr data-week="${w.week}"><th scope="row">${w.week}</th><td class="unlike-share">${share === null ? 'unknown' : `${pct(share)} (${w.unlike} of ${w.cases - w.unknown})`}${w.unknown ? `; ${w.unknown} unknown` : ''}</td>${cells}</tr>`;
    })
    .join('');
  return layout(
    ctx,
    'Drift',
    `<h1>Drift</h1>
<form class="panel" method="get" action="/admin/drift"><label>Model version <select name="model">${options}</select></label> <button type="submit">Show</button></form>
<div class="panel"><p>Each week (starting Monday, UTC): the share of inputs unlike the training data (atypicality beyond the ${report.unlikePercentile}th percentile of the training ${unit}' own scores), and each measure's median (quartiles) with the share outside the training ${unit}' 1st–99th percentile (a slide's focus: its tissue tiles' median).${report.training ? '' : ` <strong>This version keeps no reference of its training ${unit}: its inputs\u2019 atypicality and the training ranges are unknown.</strong>`}</p>
<table id="drift"><thead><tr><th scope="col">Week</th><th scope="col">Unlike the training data</th>${DRIFT_MEASURES.map((m) => `<th scope="col">${MEASURE_NAMES[m]}</th>`).join('')}</tr></thead>
<tbody>${training}${rows || '<tr><td colspan="6">No cases in these weeks.</td></tr>'}</tbody></table></div>`,
  );
}
