/**
 * The evaluation report: one HTML file with everything inline (styles, SVG charts, PNG heatmaps
 * as data URIs), readable offline and safe to mail.
 */
import { escapeHtml as esc } from '../html.js';
import { percent as pct } from '../format.js';
import { architectureOf, type ModelManifest } from '../model/package.js';
import { classColour } from '../predict/heatmap.js';
import type { VoteRule } from '../engine/pooling.js';
import type { Verdict } from '../predict/verdict.js';
import type { ClassificationMetrics } from './metrics.js';

/** What `evaluate` found for one image, as written to evaluation.json and rendered here. */
export interface EvaluatedImage extends Verdict {
  imageId: number;
  fileName: string;
  className: string;
  caseId: string;
  /** Centred log-probabilities under the rule, in class order: what calibration is fitted on. */
  scores: number[];
}

export interface EvaluationReport {
  model: { name: string; version: number; dir: string; syntheticWeights: boolean };
  store: string;
  partition: string;
  rule: VoteRule;
  /** Images classified by the model's own rule. */
  image: ClassificationMetrics;
  imageMajority: ClassificationMetrics;
  imageMean: ClassificationMetrics;
  patch: ClassificationMetrics;
  /** With a calibrated model: the share of images it answers, and its accuracy on them. */
  abstention?: { coverage: number; answered: number; answeredAccuracy: number | null };
  images: EvaluatedImage[];
  seconds: number;
  createdAt: string;
}

function curves(manifest: ModelManifest): string {
  const h = manifest.history;
  if (h.length === 0) return '<p>No training history.</p>';
  const W = 560;
  const H = 220;
  const pad = 36;
  const x = (i: number): number => pad + ((W - 2 * pad) * i) / Math.max(1, h.length - 1);
  const maxLoss = Math.max(...h.map((e) => e.loss), 1e-6);
  const line = (values: (number | undefined)[], scale: number, colour: string, label: string): string => {
    const points = values
      .map((v, i) =>
        v === undefined ? '' : `${x(i).toFixed(1)},${(H - pad - ((H - 2 * pad) * v) / scale).toFixed(1)}`,
      )
      .filter(Boolean)
      .join(' ');
    return `<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points}"><title>${esc(label)}</title></polyline>`;
  };
  return `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="Training curves">
  <rect x="${pad}" y="${pad}" width="${W - 2 * pad}" height="${H - 2 * pad}" fill="#fafafa" stroke="#ccc"/>
  ${line(
    h.map((e) => e.loss),
    maxLoss,
    '#d55e00',
    'training loss',
  )}
  ${line(
    h.map((e) => e.accuracy),
    1,
    '#0072b2',
    'training patch accuracy',
  )}
  ${line(
    h.map((e) => e.validationImageAccuracy),
    1,
    '#009e73',
    'validation image accuracy',
  )}
  <text x="${pad}" y="${H - 8}" font-size="11">epoch 1</text><text x="${W - pad - 40}" y="${H - 8}" font-size="11">epoch ${h.length}</text>
  <text x="${pad}" y="20" font-size="11" fill="#d55e00">loss (max ${maxLoss.toFixed(2)})</text>
  <text x="${pad + 150}" y="20" font-size="11" fill="#0072b2">train patch accuracy</text>
  <text x="${pad + 300}" y="20" font-size="11" fill="#009e73">validation image accuracy</text>
</svg>`;
}

function confusion(m: ClassificationMetrics, classes: readonly string[], caption: string): string {
  const max = Math.max(1, ...m.confusion.flat());
  const rows = m.confusion
    .map(
      (row, t) =>
        `<tr><th scope="row">${esc(classes[t] ?? '')}</th>${row
          .map(
            (v) => `<td style="background:rgba(0,114,178,${(0.08 + (0.8 * v) / max).toFixed(2)})">${v}</td>`,
          )
          .join('')}</tr>`,
    )
    .join('');
  return `<table class="cm"><caption>${esc(caption)} (rows: truth, columns: predicted)</caption>
<tr><th></th>${classes.map((c) => `<th scope="col">${esc(c)}</th>`).join('')}</tr>${rows}</table>`;
}

function perClass(m: ClassificationMetrics): string {
  return `<table><tr><th>class</th><th>precision</th><th>recall</th><th>F1</th><th>images</th></tr>${m.perClass
    .map(
      (c) =>
        `<tr><td>${esc(c.className)}</td><td>${pct(c.precision)}</td><td>${pct(c.recall)}</td><td>${pct(c.f1)}</td><td>${c.support}</td></tr>`,
    )
    .join('')}</table>`;
}

function voteBars(report: EvaluationReport, classes: readonly string[]): string {
  return report.images
    .map((image) => {
      const bars = classes
        .map((c, k) => {
          const [r, g, b] = classColour(k);
          const share = image.voteShares[c] ?? 0;
          return `<span style="width:${(share * 100).toFixed(1)}%;background:rgb(${r},${g},${b})" title="${esc(c)} ${pct(share)}"></span>`;
        })
        .join('');
      const ok = image.predicted === image.className;
      return `<tr class="${ok ? 'ok' : 'wrong'}"><td>${esc(image.className)}/${esc(image.fileName)}</td><td>${esc(image.caseId)}</td><td>${esc(image.predicted)}${ok ? '' : ' ✗'}</td><td><div class="bar">${bars}</div></td></tr>`;
    })
    .join('');
}

export function renderReport(
  report: EvaluationReport,
  manifest: ModelManifest,
  heatmaps: { title: string; png: Buffer }[],
): string {
  const classes = manifest.classes;
  const legend = classes
    .map((c, k) => {
      const [r, g, b] = classColour(k);
      return `<span class="key"><span style="background:rgb(${r},${g},${b})"></span>${esc(c)}</span>`;
    })
    .join(' ');
  const m = report.image;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pathotype evaluation: ${esc(report.model.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:1100px;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}
td:first-child,th:first-child{text-align:left}.cm td{min-width:3rem;text-align:center}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.4rem}.bar{display:flex;width:260px;height:12px;background:#eee}.bar span{display:block;height:100%}
tr.wrong td{background:#fff4f0}.key{margin-right:1rem}.key span{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:middle}
.notice{background:#fff8e1;border:1px solid #f0c36d;padding:.5rem 1rem;border-radius:6px}
figure{display:inline-block;margin:.5rem}figure img{max-width:340px;display:block}figcaption{font-size:12px}
</style></head><body>
<h1>Evaluation of ${esc(report.model.name)} v${report.model.version}</h1>
<p class="notice">Research use only, not for diagnosis.${report.model.syntheticWeights ? ' <strong>This model was trained from random weights standing in for missing pretrained ones.</strong>' : ''}</p>
<p>${esc(architectureOf(manifest))} on ${manifest.preprocess.tiles.patchSize}x${manifest.preprocess.tiles.patchSize} patches; ${report.images.length} ${esc(report.partition)} images of
patch store '${esc(report.store)}' (split ${esc(manifest.data.split ?? 'none')}); vote: ${esc(report.rule)}. ${esc(report.createdAt)}.</p>
<div class="cards">
<div class="card">image accuracy (${esc(report.rule)} vote)<b>${pct(m.accuracy)}</b></div>
<div class="card">majority vote<b>${pct(report.imageMajority.accuracy)}</b></div>
<div class="card">mean probability<b>${pct(report.imageMean.accuracy)}</b></div>${
    report.abstention
      ? `<div class="card">answered<b>${pct(report.abstention.coverage)}</b>${
          report.abstention.answeredAccuracy === null
            ? 'none'
            : `${pct(report.abstention.answeredAccuracy)} right`
        }</div>`
      : ''
  }
<div class="card">balanced accuracy<b>${pct(m.balancedAccuracy)}</b></div>
<div class="card">Cohen's kappa<b>${m.kappa.toFixed(3)}</b></div>
<div class="card">patch accuracy<b>${pct(report.patch.accuracy)}</b></div>
</div>
<h2>Training</h2>${curves(manifest)}
<h2>Images</h2>${confusion(m, classes, `Image level, ${report.rule} vote`)}${perClass(m)}
${confusion(report.imageMean, classes, 'Image level, mean probability')}
<h2>Patches</h2>${confusion(report.patch, classes, 'Patch level')}${perClass(report.patch)}
<h2>Heatmaps</h2><p>${legend}; opacity follows the model's confidence.</p>
${heatmaps.map((h) => `<figure><img alt="${esc(h.title)}" src="data:image/png;base64,${h.png.toString('base64')}"><figcaption>${esc(h.title)}</figcaption></figure>`).join('')}
<h2>Vote shares per image</h2><p>${legend}</p>
<table><tr><th>image</th><th>case</th><th>predicted</th><th>vote shares</th></tr>${voteBars(report, classes)}</table>
</body></html>
`;
}
