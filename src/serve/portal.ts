/**
 * The pathologist's portal: server-rendered pages, their scripts served as files from
 * assets/portal (no inline script, so the Content-Security-Policy allows only this server's own),
 * everything served by this server (no CDN), usable by keyboard and screen reader.
 */
import { estimateLabel } from '../evaluate/cross-validation.js';
import { escapeHtml } from '../html.js';
import { SUPPORTED_FORMATS, type ImageFormat } from '../image/image-io.js';
import { inferScale, mppOfScale, ORIGINAL_HEIGHT, ORIGINAL_MPP, ORIGINAL_WIDTH } from '../image/scale.js';
import { percent as pct } from '../format.js';
import { ATTENTION_RGB, classColour } from '../predict/heatmap.js';
import type { PatchGrid } from '../predict/predictor.js';
import {
  thresholdText,
  verdictHeadline,
  verdictHtml,
  verdictLine,
  type ShownVerdict,
} from '../predict/verdict-text.js';
import { architectureOf, type ModelManifest } from '../model/package.js';
import type { PredictionRecord } from '../store/predictions.js';
import { REVIEW_SCRIPT } from './review-pages.js';
import { atypicalityText, type Atypicality } from '../predict/atypicality.js';

const STYLE = `
*{box-sizing:border-box}[hidden]{display:none!important}body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d3557;color:#fff;padding:.7rem 1.5rem;display:flex;gap:2rem;align-items:center}
header a{color:#fff;text-decoration:none;font-weight:600}header a:focus,header a:hover{text-decoration:underline}
header .brand{font-size:1.2rem}main{max-width:1100px;margin:1.5rem auto;padding:0 1.5rem}select{max-width:100%}
.notice{background:#fff8e1;border:1px solid #e0b84f;border-radius:6px;padding:.5rem 1rem;margin-bottom:1rem}
.panel{background:#fff;border:1px solid #dde1e7;border-radius:8px;padding:1.2rem;margin-bottom:1rem}
#drop{border:2px dashed #8a99ad;border-radius:8px;padding:2.5rem;text-align:center;background:#fff}
#drop.over{background:#eaf2ff;border-color:#1d3557}
button,.button{background:#1d3557;color:#fff;border:0;border-radius:6px;padding:.55rem 1.1rem;font:inherit;cursor:pointer;text-decoration:none;display:inline-block}
button:focus-visible,a:focus-visible,input:focus-visible,label:focus-within{outline:3px solid #f4a261;outline-offset:2px}
progress{width:100%;height:1rem}.error{color:#b00020;font-weight:600}
.result{display:grid;grid-template-columns:minmax(0,3fr) minmax(0,2fr);gap:1.2rem}
@media (max-width:800px){.result{grid-template-columns:1fr}}
.figure{position:relative;display:inline-block;max-width:100%}.figure img{display:block;max-width:100%;height:auto}
.figure img.overlay{position:absolute;inset:0;width:100%;height:100%}
.big{font-size:2rem;font-weight:700;margin:.2rem 0}.bars .row{display:flex;align-items:center;gap:.5rem;margin:.3rem 0}
.bars .label{width:5rem}.bars .track{flex:1;background:#e8ebf0;height:1.1rem;border-radius:4px;overflow:hidden}
.bars .fill{height:100%}.bars .value{width:4.5rem;text-align:right;font-variant-numeric:tabular-nums}
table{border-collapse:collapse;width:100%}td,th{border-bottom:1px solid #e3e6eb;padding:.4rem .5rem;text-align:left}
.legend span{display:inline-block;width:.9rem;height:.9rem;border-radius:2px;margin:0 .3rem 0 .8rem;vertical-align:middle}
.legend span.na{background:repeating-linear-gradient(45deg,#5a5a5a 0 2px,transparent 2px 8px);border:1px solid #5a5a5a}
.pager{display:flex;gap:1rem;margin-top:1rem}.muted{color:#5b6575}form.inline{display:inline;margin-right:.5rem}
header nav{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap}.who{margin-left:1.5rem}.logout{display:inline;margin:0}.logout button{padding:.2rem .6rem}
`;

/** The legend's entry for the hatching of what no patch covered (predict/heatmap.ts). */
export const NOT_ANALYSED_LEGEND = '<span class="na"></span>not analysed';

/** The portal's icon (a file under assets/portal, open to all like the sign-in page's scripts). */
export const FAVICON = '/static/portal/favicon.svg';

/** How each format the decoder takes is named and picked in a browser: one entry per SUPPORTED_FORMATS. */
const FORMAT_FILES = {
  tiff: { label: 'TIFF', types: ['image/tiff', '.tif', '.tiff'] },
  png: { label: 'PNG', types: ['image/png', '.png'] },
  jpeg: { label: 'JPEG', types: ['image/jpeg', '.jpg', '.jpeg'] },
  webp: { label: 'WebP', types: ['image/webp', '.webp'] },
} as const satisfies Record<ImageFormat, { label: string; types: readonly string[] }>;

const UPLOAD_FORMATS = SUPPORTED_FORMATS.map((f) => FORMAT_FILES[f]);
/** "a TIFF, PNG, JPEG or WebP": exactly the formats an upload is decoded from. */
export const UPLOAD_FORMATS_TEXT = `a ${UPLOAD_FORMATS.slice(0, -1)
  .map((f) => f.label)
  .join(', ')} or ${UPLOAD_FORMATS[UPLOAD_FORMATS.length - 1]?.label ?? ''}`;
const UPLOAD_ACCEPT = UPLOAD_FORMATS.flatMap((f) => f.types).join(',');

/** Who is looking at a page, and the token its forms and scripts send back. */
export interface PageContext {
  user: { name: string; role: string } | null;
  csrfToken: string | null;
}

export const ANONYMOUS_PAGE: PageContext = { user: null, csrfToken: null };

/** Data a page script reads, in a JSON block (never executed, so the CSP has nothing to allow). */
export function jsonBlock(id: string, value: unknown): string {
  return `<script type="application/json" id="${id}">${JSON.stringify(value).replace(/</g, '\\u003c')}</script>`;
}

function signedIn(ctx: PageContext): string {
  if (!ctx.user) return '';
  const role = ctx.user.role;
  const reviews = role === 'admin' || role === 'pathologist' ? ' &nbsp; <a href="/reviews">Reviews</a>' : '';
  const audit =
    role === 'admin'
      ? ' &nbsp; <a href="/admin/models">Models</a> &nbsp; <a href="/admin/agreement">Agreement</a> &nbsp; <a href="/admin/drift">Drift</a> &nbsp; <a href="/admin/audit">Audit</a> &nbsp; <a href="/admin/users">Users</a>'
      : '';
  return `${reviews}${audit}<span class="who">Signed in as <strong id="signed-in">${escapeHtml(ctx.user.name)}</strong> (${escapeHtml(ctx.user.role)})</span>
<form method="post" action="/logout" class="logout"><input type="hidden" name="_csrf" value="${escapeHtml(ctx.csrfToken ?? '')}"><button type="submit">Sign out</button></form>`;
}

export function layout(
  ctx: PageContext,
  title: string,
  body: string,
  options: { scripts?: string[]; head?: string } = {},
): string {
  const scripts = (options.scripts ?? []).map((src) => `<script src="${src}"></script>`).join('');
  const csrf = ctx.csrfToken ? `<meta name="csrf-token" content="${escapeHtml(ctx.csrfToken)}">` : '';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)} · pathotype</title><link rel="icon" href="${FAVICON}" type="image/svg+xml"><style>${STYLE}</style>${csrf}${options.head ?? ''}</head>
<body><header><span class="brand">pathotype</span><nav aria-label="Main"><a href="/">Upload</a> &nbsp; <a href="/cases">History</a> &nbsp; <a href="/slides">Slides</a> &nbsp; <a href="/docs">API</a>${signedIn(ctx)}</nav></header>
<main>
<p class="notice" role="note"><strong>Research use only, not for diagnosis.</strong> Results come from a machine-learning model and must not guide patient care.</p>
${body}
</main>${scripts}</body></html>`;
}

interface CrossValidationFigures {
  imageAccuracy: number;
  accuracyInterval: { low: number; high: number };
  groups: number;
  images: number;
  coverage: number;
  answeredAccuracy: number | null;
  /** Absent in packages made before it was recorded: then one group per image says it. */
  splitByImage?: boolean;
  /** What was cross-validated: images (absent), or slides (a package learnt from slides). */
  unit?: 'images' | 'slides';
}

/** What the model is expected to achieve on new patients, as cross-validation measured it. */
function expectedAccuracy(manifest: ModelManifest): string {
  const cv = manifest.metrics.crossValidation as CrossValidationFigures | undefined;
  if (cv) {
    // A slide package's figures are per slide, in the same fields (pipeline/slide-run.ts).
    const unit = cv.unit === 'slides' ? 'slide' : 'image';
    const answered =
      cv.answeredAccuracy === null
        ? 'it answers none at its threshold'
        : `${pct(cv.answeredAccuracy)} on the ${pct(cv.coverage)} of ${unit}s it answers`;
    const splitByImage = cv.splitByImage ?? cv.groups === cv.images;
    return (
      `${estimateLabel(splitByImage)}: ${pct(cv.imageAccuracy)} ${unit} accuracy (95% CI ${pct(cv.accuracyInterval.low)}–${pct(cv.accuracyInterval.high)}), ` +
      `${answered}; ${splitByImage ? `cross-validation split by image over ${cv.images} images` : `patient-grouped cross-validation over ${cv.groups} patients, ${cv.images} ${unit}s`}`
    );
  }
  const test = manifest.metrics.test as { imageAccuracy?: number; images?: number } | undefined;
  return test?.imageAccuracy === undefined
    ? 'not evaluated'
    : `${pct(test.imageAccuracy)} image accuracy on ${test.images ?? '?'} held-out images`;
}

/** A model in words (plain text): name, version, architecture, classes and expected accuracy. */
function modelText(manifest: ModelManifest): string {
  return `${manifest.name} v${manifest.version} (${architectureOf(manifest)}, classes ${manifest.classes.join(', ')}; ${expectedAccuracy(manifest)})`;
}

const SYNTHETIC_WEIGHTS = 'trained from random stand-in weights';

export function modelSummary(manifest: ModelManifest): string {
  return `${escapeHtml(modelText(manifest))}${manifest.syntheticWeights ? ` <strong>${SYNTHETIC_WEIGHTS}</strong>` : ''}`;
}

/**
 * Which model answers: with one name served, what it is; with several, a choice among their
 * active versions (the default name's first), sent with the upload as `?model=NAME`.
 */
export function modelChoice(manifests: readonly ModelManifest[]): string {
  const [first] = manifests;
  if (!first) return '';
  if (manifests.length === 1) return `<p class="muted">Model: ${modelSummary(first)}</p>`;
  const options = manifests
    .map(
      (m) =>
        `<option value="${escapeHtml(m.name)}">${escapeHtml(modelText(m))}${m.syntheticWeights ? `: ${SYNTHETIC_WEIGHTS}` : ''}</option>`,
    )
    .join('');
  return `<p><label for="model">Model</label> <select id="model">${options}</select></p>`;
}

export function uploadPage(ctx: PageContext, manifests: readonly ModelManifest[]): string {
  return layout(
    ctx,
    'Upload',
    `<h1>Classify an H&amp;E image</h1>
<div class="panel">
<div id="drop">
<p>Drop ${UPLOAD_FORMATS_TEXT} image here, or</p>
<label class="button" for="file">Choose an image…</label>
<input id="file" name="image" type="file" accept="${UPLOAD_ACCEPT}" class="visually-hidden" style="position:absolute;left:-9999px">
</div>
<p><label for="resolution">Resolution</label> <input id="resolution" type="number" step="any" min="0" inputmode="decimal">
<select id="resolution-unit" aria-label="Unit of the resolution"><option value="mpp">µm per pixel</option><option value="scale">scale of the ${ORIGINAL_WIDTH}×${ORIGINAL_HEIGHT} release</option></select>
<span class="muted">optional, set it before choosing the image; without it the scale comes from the image's size, as for the release's ${ORIGINAL_WIDTH}×${ORIGINAL_HEIGHT} fields (${ORIGINAL_MPP} µm per pixel)</span></p>
<progress id="progress" max="100" hidden aria-label="Upload progress"></progress>
<p id="status" role="status" aria-live="polite"></p>
</div>
${modelChoice(manifests)}${jsonBlock('upload-options', { originalMpp: ORIGINAL_MPP })}`,
    { scripts: ['/static/portal/send.js', '/static/portal/upload.js'] },
  );
}

/** The colour of attention: one hue, its opacity the patch's weight against the image's largest. */
const ATTENTION_COLOUR = `rgb(${ATTENTION_RGB.join(',')})`;

/**
 * A model that pools by attention: each patch's weight in the answer as a map over the image
 * (hidden until asked for), each cell carrying its weight for the pointer and for tools.
 */
function attentionMap(grid: PatchGrid): string {
  const weights = grid.attention;
  if (!weights || weights.length === 0) return '';
  const top = Math.max(...weights);
  const cells = grid.cells
    .map(([col, row], k) => {
      const w = weights[k] ?? 0;
      const share = top > 0 ? w / top : 0;
      return `<rect x="${col * grid.stride}" y="${row * grid.stride}" width="${grid.patchSize}" height="${grid.patchSize}" fill="${ATTENTION_COLOUR}" fill-opacity="${(0.75 * share).toFixed(3)}" data-col="${col}" data-row="${row}" data-attention="${w}"><title>patch ${col}, ${row}: attention ${pct(w)}</title></rect>`;
    })
    .join('');
  return `<svg id="attention" class="overlay" viewBox="0 0 ${grid.width} ${grid.height}" preserveAspectRatio="none" role="img" aria-label="Attention map: each patch's weight in the answer" style="display:none">${cells}</svg>`;
}

function attentionControls(grid: PatchGrid): string {
  const weights = grid.attention;
  if (!weights || weights.length === 0) return '';
  const ranked = grid.cells
    .map(([col, row], k) => ({ col, row, w: weights[k] ?? 0 }))
    .sort((a, b) => b.w - a.w)
    .slice(0, 5)
    .map((c) => `<li>patch ${c.col}, ${c.row}: ${pct(c.w)}</li>`)
    .join('');
  return `<p><label><input id="toggle-attention" type="checkbox"> Show the attention map</label> <span class="muted">(the model answers from the patches it weighs most; an even share would be ${pct(1 / weights.length)})</span></p>
<details><summary>Patches weighed most</summary><ol id="top-attention">${ranked}</ol></details>`;
}

/**
 * How the image's scale was found. A record keeps the scale used, not where it came from: when
 * it is what the size implies, saying so is true (whether or not the uploader gave the same value).
 */
export function scaleSource(record: Pick<PredictionRecord, 'width' | 'height' | 'result'>): string {
  const scale = record.result.scale;
  if (scale === null) return 'none: this model tiles each image at its own scale';
  const mpp = mppOfScale(scale)?.toPrecision(4) ?? '?';
  const what = `${scale} of the ${ORIGINAL_WIDTH}×${ORIGINAL_HEIGHT} release (${mpp} µm per pixel)`;
  return inferScale(record.width, record.height) === scale
    ? `${what}, inferred from the image's size ${record.width}×${record.height} (the release's aspect)`
    : `${what}, given with the upload`;
}

/**
 * The verdict as every page shows it (result, field and slide viewers): the headline, the
 * one-line verdict the lists show too, and why when it is uncertain.
 */
export function verdictPanel(v: ShownVerdict): string {
  const uncertain = v.status === 'uncertain';
  return `<p class="muted">${uncertain ? 'Result' : 'Predicted subtype'}</p>
<p class="big" id="predicted" data-status="${v.status}">${escapeHtml(verdictHeadline(v))}</p>
<p id="verdict">${verdictHtml(v)}</p>${
    uncertain
      ? `<p id="uncertain-detail">The model leans to ${escapeHtml(v.predicted)}, below what it needs to answer: ${escapeHtml(thresholdText(v))}.</p>`
      : ''
  }`;
}

/** What a page says of the version that answered (`name@version`): its summary, or that this server no longer holds it. */
function answeredBy(modelId: string, manifest: ModelManifest | null): string {
  return manifest
    ? modelSummary(manifest)
    : `${escapeHtml(modelId)} <span class="muted">(no longer held by this server)</span>`;
}

/** The answering version as an element the tests and tools find (`#answered-by`, `data-model`). */
export function answeredByHtml(modelId: string, manifest: ModelManifest | null, tag: 'td' | 'p'): string {
  return `<${tag} id="answered-by" data-model="${escapeHtml(modelId)}">${tag === 'p' ? 'Model: ' : ''}${answeredBy(modelId, manifest)}</${tag}>`;
}

/** An input's atypicality as the pages say it, marked when it is unlike the training data. */
export function atypicalityHtml(a: Atypicality | null | undefined, tag: 'td' | 'p'): string {
  return `<${tag} id="atypicality" data-unlike="${a?.unlike === true}">${escapeHtml(atypicalityText(a))}</${tag}>`;
}

/** The input's atypicality as the result page's row. */
function atypicalityRow(record: PredictionRecord): string {
  return `<tr><th scope="row">Input</th>${atypicalityHtml(record.result.atypicality, 'td')}</tr>`;
}

export function resultPage(
  ctx: PageContext,
  record: PredictionRecord,
  manifest: ModelManifest | null,
  hasImage: boolean,
  review: string,
): string {
  const r = record.result;
  const classes = manifest?.classes ?? Object.keys(r.voteShares);
  const bars = classes
    .map((c, k) => {
      const [red, green, blue] = classColour(k);
      const share = r.voteShares[c] ?? 0;
      return `<div class="row"><span class="label">${escapeHtml(c)}</span><span class="track" role="img" aria-label="${escapeHtml(c)}: ${pct(share)} of patch votes"><span class="fill" style="display:block;width:${(share * 100).toFixed(1)}%;background:rgb(${red},${green},${blue})"></span></span><span class="value">${pct(share)}</span></div>`;
    })
    .join('');
  const legend = classes
    .map((c, k) => {
      const [red, green, blue] = classColour(k);
      return `<span style="background:rgb(${red},${green},${blue})"></span>${escapeHtml(c)}`;
    })
    .join('')
    .concat(NOT_ANALYSED_LEGEND);
  const figure = hasImage
    ? `<div class="figure"><img src="/cases/${encodeURIComponent(record.id)}/image.png" alt="The uploaded image ${escapeHtml(record.fileName)}" width="${r.grid.width}" height="${r.grid.height}">
<img id="overlay" class="overlay" src="/cases/${encodeURIComponent(record.id)}/overlay.png" alt="Patch heatmap: each patch coloured by its predicted class, opacity by confidence">${attentionMap(r.grid)}</div>
<p><label><input id="toggle" type="checkbox" checked> Show the patch heatmap</label> <span class="legend">${legend}</span></p>${attentionControls(r.grid)}
<p><a href="/cases/${encodeURIComponent(record.id)}/viewer">Open in the zoomable viewer</a></p>`
    : '<p class="muted">The image was not kept on the server, so it cannot be shown.</p>';
  return layout(
    ctx,
    `${record.fileName}: ${verdictLine(r)}`,
    `<h1>${escapeHtml(record.fileName)}</h1>
<div class="result">
<section class="panel" aria-label="Image">${figure}</section>
<section class="panel" aria-label="Classification">
${r.atypicality?.unlike ? `<p class="notice" id="unlike-notice" role="note"><strong>Unlike the training data.</strong> This image lies beyond what the model saw in training (its stain or its features): weigh the answer accordingly.</p>` : ''}${verdictPanel(r)}
<p>Vote share: ${pct(r.voteShares[r.predicted] ?? 0)} of ${r.patches} patches voted ${escapeHtml(r.predicted)}; mean patch probability ${pct(r.meanProbabilities[r.predicted] ?? 0)}.</p>
<h2>Vote shares</h2><div class="bars">${bars}</div>
<h2>Details</h2>
<table><tbody>
<tr><th scope="row">Case id</th><td><code>${escapeHtml(record.id)}</code></td></tr>
<tr><th scope="row">Received</th><td>${escapeHtml(record.createdAt)}</td></tr>
<tr><th scope="row">Image</th><td>${record.width}×${record.height} px, ${(record.bytes / 1024).toFixed(0)} KiB, SHA-256 <code>${record.sha256.slice(0, 16)}…</code></td></tr>
<tr><th scope="row">Scale</th><td id="scale-source">${escapeHtml(scaleSource(record))}</td></tr>
${atypicalityRow(record)}
<tr><th scope="row">Model</th>${answeredByHtml(record.modelId, manifest, 'td')}</tr>
<tr><th scope="row">Time</th><td>${record.timings.totalMs.toFixed(0)} ms</td></tr>
</tbody></table>
<p><a href="/api/v1/predictions/${encodeURIComponent(record.id)}">Result as JSON</a></p>
</section></div>${review}`,
    { scripts: [...(hasImage ? ['/static/portal/result.js'] : []), REVIEW_SCRIPT] },
  );
}

export function historyPage(
  ctx: PageContext,
  items: PredictionRecord[],
  total: number,
  page: number,
  pageSize: number,
  query: string,
): string {
  const rows = items
    .map(
      (r) =>
        `<tr><td><a href="/cases/${encodeURIComponent(r.id)}">${escapeHtml(r.fileName)}</a></td><td>${verdictHtml(r.result)}</td><td>${escapeHtml(r.createdAt.replace('T', ' ').slice(0, 19))}</td><td><code>${escapeHtml(r.id.slice(0, 8))}</code></td></tr>`,
    )
    .join('');
  const pages = Math.max(1, Math.ceil(total / pageSize));
  const link = (p: number, text: string): string =>
    `<a class="button" href="/cases?page=${p}${query ? `&q=${encodeURIComponent(query)}` : ''}">${text}</a>`;
  return layout(
    ctx,
    'History',
    `<h1>Past cases</h1>
<form class="panel" role="search" method="get" action="/cases">
<label for="q">Search by file name or id</label>
<input id="q" name="q" value="${escapeHtml(query)}"> <button type="submit">Search</button>
</form>
<div class="panel">
<p>${total} case${total === 1 ? '' : 's'}${query ? ` matching “${escapeHtml(query)}”` : ''}, newest first.</p>
<table><thead><tr><th scope="col">Image</th><th scope="col">Verdict</th><th scope="col">Received (UTC)</th><th scope="col">Id</th></tr></thead>
<tbody>${rows || '<tr><td colspan="4">No cases yet.</td></tr>'}</tbody></table>
<nav class="pager" aria-label="Pages">${page > 1 ? link(page - 1, '← Newer') : ''}<span>Page ${page} of ${pages}</span>${page < pages ? link(page + 1, 'Older →') : ''}</nav>
</div>`,
  );
}

export function errorPage(ctx: PageContext, status: number, message: string): string {
  return layout(
    ctx,
    `Error ${status}`,
    `<h1>Error ${status}</h1><p class="error">${escapeHtml(message)}</p><p><a href="/">Back to the upload page</a></p>`,
  );
}

/** The sign-in page: the one page open to everyone on a protected server. */
export function loginPage(options: { next: string; error?: string; name?: string }): string {
  const error = options.error
    ? `<p class="error" role="alert" id="login-error">${escapeHtml(options.error)}</p>`
    : '';
  return layout(
    ANONYMOUS_PAGE,
    'Sign in',
    `<h1>Sign in</h1>
<form class="panel" method="post" action="/login">
${error}
<input type="hidden" name="next" value="${escapeHtml(options.next)}">
<p><label for="name">User name</label><br><input id="name" name="name" autocomplete="username" required maxlength="64" value="${escapeHtml(options.name ?? '')}"></p>
<p><label for="password">Password</label><br><input id="password" name="password" type="password" autocomplete="current-password" required maxlength="256"></p>
<p><button type="submit" id="sign-in">Sign in</button></p>
</form>`,
  );
}
