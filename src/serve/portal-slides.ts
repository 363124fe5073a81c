/**
 * The portal's zoomable viewer (slides and fields), the slide list and the slide upload: every
 * verdict in them written by predict/verdict-text.ts, as on the other pages.
 */
import { escapeHtml } from '../html.js';
import { percent as pct } from '../format.js';
import { classColour } from '../predict/heatmap.js';
import { hasAttention, type ModelManifest } from '../model/package.js';
import { SLIDE_EXTENSIONS } from '../slide/slide.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { ShownVerdict } from '../predict/verdict-text.js';
import { verdictHtml } from '../predict/verdict-text.js';
import { REVIEW_SCRIPT } from './review-pages.js';
import type { Atypicality } from '../predict/atypicality.js';
import {
  answeredByHtml,
  atypicalityHtml,
  jsonBlock,
  layout,
  modelChoice,
  NOT_ANALYSED_LEGEND,
  verdictPanel,
  type PageContext,
} from './portal.js';

/** A slide job as the viewer shows it (from the slide jobs' public shape). */
export interface ViewedSlide {
  id: string;
  fileName: string;
  status: string;
  progress: { done: number; total: number };
  error: { code: string; message: string } | null;
  result: (ShownVerdict & { voteShares: Record<string, number> }) | null;
  /** How unlike the training slides it is (null: unknown); shown once the job is done. */
  atypicality: Atypicality | null;
  /** The version that answers it (`name@version`). */
  modelId: string;
}

/**
 * The zoomable viewer: an image in OpenSeadragon (served by this server) with the class overlay
 * on top (toggle, opacity), its legend, and the answer beside it. `base` and `overlay` are
 * OpenSeadragon tile sources: Deep Zoom for slides, simple images for fields.
 */
function zoomViewer(
  ctx: PageContext,
  options: {
    title: string;
    base: unknown;
    overlay: unknown;
    /** A model that pools by attention: the map of each tile's (or patch's) weight in its answer. */
    attention?: unknown;
    answer: string;
    status: string;
    legend: string;
    /** Reload until the job is done. */
    waiting: boolean;
  },
): string {
  const body = `<h1>${escapeHtml(options.title)}</h1>
<div class="result"><div>
<div id="viewer" role="img" aria-label="Zoomable image with its class overlay" style="width:100%;height:620px;background:#20242c;border-radius:8px"></div>
<p><label><input type="checkbox" id="show-overlay" checked> Class overlay</label>
&nbsp; <label>Opacity <input type="range" id="opacity" min="0" max="100" value="60"></label>${
    options.attention
      ? ` &nbsp; <label><input type="checkbox" id="show-attention"> Attention map</label> <span class="muted">(each tile's weight in the answer)</span>`
      : ''
  }</p>
<p class="legend" aria-label="Legend">${options.legend}</p>
</div><div class="panel" id="answer" data-status="${escapeHtml(options.status)}">${options.answer}</div></div>`;
  return layout(
    ctx,
    options.title,
    `${body}${jsonBlock('viewer-options', {
      base: options.base,
      overlay: options.overlay,
      attention: options.attention ?? null,
      waiting: options.waiting,
    })}`,
    {
      scripts: ['/static/openseadragon/openseadragon.min.js', '/static/portal/viewer.js', REVIEW_SCRIPT],
    },
  );
}

function legendOf(manifest: ModelManifest): string {
  return manifest.classes
    .map((c, k) => `<span style="background:rgb(${classColour(k).join(',')})"></span>${escapeHtml(c)}`)
    .join('');
}

function voteBars(manifest: ModelManifest, shares: Record<string, number>): string {
  return `<div class="bars">${Object.entries(shares)
    .map(
      ([c, v]) =>
        `<div class="row"><span class="label">${escapeHtml(c)}</span><span class="track"><span class="fill" style="display:block;width:${(v * 100).toFixed(1)}%;background:rgb(${classColour(manifest.classes.indexOf(c)).join(',')})"></span></span><span class="value">${pct(v)}</span></div>`,
    )
    .join('')}</div>`;
}

/** Stops a queued or running job: shown to those who may (the server checks it is their job). */
function cancelButton(ctx: PageContext, job: ViewedSlide): string {
  if (ctx.user && ctx.user.role === 'viewer') return '';
  return `<form method="post" action="/slides/${encodeURIComponent(job.id)}/cancel"><input type="hidden" name="_csrf" value="${escapeHtml(ctx.csrfToken ?? '')}"><button type="submit" id="cancel">Cancel this job</button></form>`;
}

/**
 * A slide in the zoomable viewer: its Deep Zoom tiles, the overlay once the job is done, the
 * version that answers it, and once done its atypicality and `reviews` (the reviews section and
 * form, review-pages.ts). `manifest` is null when this server no longer holds that version.
 */
export function slideViewerPage(
  ctx: PageContext,
  job: ViewedSlide,
  manifest: ModelManifest | null,
  fallback: ModelManifest,
  reviews: string,
): string {
  const r = job.result;
  const shown = manifest ?? fallback;
  const answer = r
    ? `${verdictPanel(r)}${answeredByHtml(job.modelId, manifest, 'p')}${atypicalityHtml(job.atypicality, 'p')}
<h2>Vote shares of the tiles</h2>${voteBars(shown, r.voteShares)}${reviews}`
    : job.status === 'failed'
      ? `<p class="error" role="alert">The slide could not be read: ${escapeHtml(job.error?.message ?? 'unknown error')}</p>`
      : job.status === 'cancelled'
        ? '<p id="progress-text">cancelled</p>'
        : `<p id="progress-text">${escapeHtml(job.status)}: ${job.progress.done} of ${job.progress.total || '?'} tiles</p><progress id="progress" max="${job.progress.total || 1}" value="${job.progress.done}"></progress>${cancelButton(ctx, job)}`;
  const id = encodeURIComponent(job.id);
  return zoomViewer(ctx, {
    title: job.fileName,
    base: `/slides/${id}/slide.dzi`,
    overlay: job.status === 'done' ? `/slides/${id}/heatmap.dzi` : null,
    attention: job.status === 'done' && hasAttention(shown) ? `/slides/${id}/attention.dzi` : null,
    answer,
    status: job.status,
    legend: legendOf(shown),
    waiting: job.status === 'queued' || job.status === 'running',
  });
}

/** A field image (a 1388x1040 upload) in the same viewer, with its patch overlay. */
export function fieldViewerPage(ctx: PageContext, record: PredictionRecord, manifest: ModelManifest): string {
  const r = record.result;
  const id = encodeURIComponent(record.id);
  return zoomViewer(ctx, {
    title: record.fileName,
    base: { type: 'image', url: `/cases/${id}/image.png` },
    overlay: { type: 'image', url: `/cases/${id}/overlay.png` },
    answer: `${verdictPanel(r)}
<h2>Vote shares</h2>${voteBars(manifest, r.voteShares)}<p><a href="/cases/${id}">Back to the result</a></p>`,
    status: 'done',
    legend: legendOf(manifest) + NOT_ANALYSED_LEGEND,
    waiting: false,
  });
}

/** The file picker's filter: every slide format OpenSlide reads here, and pyramidal TIFF. */
const SLIDE_ACCEPT = [...SLIDE_EXTENSIONS, '.tif', '.tiff'].join(',');

/**
 * A pathologist's slide upload: streamed by the page's script into POST /api/v1/slides (the
 * slide queue), with its progress, and the slide's microns per pixel when its file does not say.
 */
function slideUploadForm(ctx: PageContext, models: readonly ModelManifest[]): string {
  if (ctx.user && ctx.user.role === 'viewer') return '';
  return `<form class="panel" id="slide-form">
<h2>Submit a slide</h2>
<p><label for="slide-file">Slide file</label> <input id="slide-file" name="slide" type="file" accept="${SLIDE_ACCEPT}" required></p>
<p><label for="slide-mpp">Microns per pixel</label> <input id="slide-mpp" name="slideMpp" type="number" step="any" min="0" max="100" inputmode="decimal"> <span class="muted">only when the slide's file does not state it</span></p>
${modelChoice(models)}
<p><button type="submit" id="submit-slide">Submit the slide</button></p>
<progress id="slide-progress" max="100" hidden aria-label="Slide upload progress"></progress>
<p id="slide-status" role="status" aria-live="polite"></p>
</form>`;
}

/** The slide jobs, newest first, and the form that submits one to any of `models` (the active versions, the default first). */
export function slideListPage(
  ctx: PageContext,
  jobs: readonly ViewedSlide[],
  models: readonly ModelManifest[],
): string {
  const rows = jobs
    .map(
      (j) =>
        `<tr><td><a href="/slides/${escapeHtml(j.id)}">${escapeHtml(j.fileName)}</a></td><td>${escapeHtml(j.status)}</td><td>${j.result ? verdictHtml(j.result) : ''}</td></tr>`,
    )
    .join('');
  return layout(
    ctx,
    'Slides',
    `<h1>Slides</h1>${slideUploadForm(ctx, models)}<p class="muted">Slides are also submitted through the REST API (POST /api/v1/slides) or QuPath (integrations/qupath).</p>
<table><thead><tr><th scope="col">Slide</th><th scope="col">Status</th><th scope="col">Verdict</th></tr></thead><tbody>${rows}</tbody></table>`,
    { scripts: ['/static/portal/send.js', '/static/portal/slides.js'] },
  );
}
