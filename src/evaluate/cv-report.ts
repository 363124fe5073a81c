/**
 * The cross-validation report: one self-contained HTML file (inline SVG, no script) with the
 * pooled figures and their intervals, each patient's result, the confusion matrix and the
 * coverage-accuracy trade-off of abstention. Charts have labelled axes with scales.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { escapeHtml as esc } from '../html.js';
import { estimateLabel } from './cross-validation.js';
import { percent as pct } from '../format.js';
import { classColour } from '../predict/heatmap.js';
import type { CoveragePoint } from './calibration.js';
import type { AbstentionSummary, CrossValidationReport, GroupResult } from './cross-validation.js';

const W = 640;
const PAD = { left: 56, right: 16, top: 16, bottom: 44 };

function ticks(
  x: (v: number) => number,
  y: (v: number) => number,
  h: number,
  xLabel: string,
  yLabel: string,
): string {
  const out: string[] = [];
  for (let v = 0; v <= 1.0001; v += 0.25) {
    out.push(
      `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${PAD.left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${(v * 100).toFixed(0)}%</text>`,
      `<text x="${x(v)}" y="${h - PAD.bottom + 16}" font-size="11" text-anchor="middle">${(v * 100).toFixed(0)}%</text>`,
    );
  }
  out.push(
    `<text x="${(PAD.left + W - PAD.right) / 2}" y="${h - 6}" font-size="12" text-anchor="middle">${esc(xLabel)}</text>`,
    `<text transform="translate(14 ${(PAD.top + h - PAD.bottom) / 2}) rotate(-90)" font-size="12" text-anchor="middle">${esc(yLabel)}</text>`,
  );
  return out.join('');
}

/** One bar per patient: the share of its images predicted right, coloured by its true class. */
function patientChart(groups: readonly GroupResult[], classes: readonly string[]): string {
  const h = 260;
  const inner = W - PAD.left - PAD.right;
  const band = inner / Math.max(1, groups.length);
  const y = (v: number): number => PAD.top + (1 - v) * (h - PAD.top - PAD.bottom);
  const bars = groups
    .map((g, i) => {
      const [r, gr, b] = classColour(Math.max(0, classes.indexOf(g.className)));
      const x = PAD.left + i * band + band * 0.15;
      return `<rect x="${x.toFixed(1)}" y="${y(g.accuracy).toFixed(1)}" width="${(band * 0.7).toFixed(1)}" height="${(y(0) - y(g.accuracy)).toFixed(1)}" fill="rgb(${r},${gr},${b})"><title>${esc(g.group)} (${esc(g.className)}): ${g.correct}/${g.images} right</title></rect>`;
    })
    .join('');
  const grid: string[] = [];
  for (let v = 0; v <= 1.0001; v += 0.25)
    grid.push(
      `<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(v)}" y2="${y(v)}" stroke="#e5e5e5"/>`,
      `<text x="${PAD.left - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end">${(v * 100).toFixed(0)}%</text>`,
    );
  return `<svg viewBox="0 0 ${W} ${h}" role="img" aria-label="Image accuracy per patient">${grid.join('')}
<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(0.5)}" y2="${y(0.5)}" stroke="#999" stroke-dasharray="4 3"/>
${bars}
<text x="${(PAD.left + W - PAD.right) / 2}" y="${h - 20}" font-size="12" text-anchor="middle">patients (${groups.length}), grouped by true class; dashed: half right</text>
<text transform="translate(14 ${(PAD.top + h - PAD.bottom) / 2}) rotate(-90)" font-size="12" text-anchor="middle">images right</text></svg>`;
}

/** Accuracy on answered images against the share answered, as the threshold rises. */
function coverageChart(curve: readonly CoveragePoint[], target: number, unit: 'image' | 'slide'): string {
  const h = 280;
  const x = (v: number): number => PAD.left + v * (W - PAD.left - PAD.right);
  const y = (v: number): number => PAD.top + (1 - v) * (h - PAD.top - PAD.bottom);
  const points = curve
    .filter((p) => p.accuracy !== null)
    .map((p) => `${x(p.coverage).toFixed(1)},${y(p.accuracy ?? 0).toFixed(1)}`)
    .join(' ');
  return `<svg viewBox="0 0 ${W} ${h}" role="img" aria-label="Accuracy on answered ${unit}s against the share answered">
${ticks(x, y, h, `share of ${unit}s answered (coverage)`, `accuracy on answered ${unit}s`)}
<line x1="${PAD.left}" x2="${W - PAD.right}" y1="${y(target)}" y2="${y(target)}" stroke="#d55e00" stroke-dasharray="5 3"><title>target ${pct(target)}</title></line>
<text x="${W - PAD.right - 4}" y="${y(target) + 14}" font-size="11" text-anchor="end" fill="#d55e00">target ${pct(target)}</text>
<polyline fill="none" stroke="#0072b2" stroke-width="2" points="${points}"/></svg>`;
}

/** The cross-validation reports' one stylesheet, inline. */
export const REPORT_STYLE = `<style>
body{font:14px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:960px;padding:0 1rem;color:#222}
h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #ddd}table{border-collapse:collapse}
td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}td:first-child,th:first-child{text-align:left}
.cards{display:flex;gap:1rem;flex-wrap:wrap}.card{border:1px solid #ddd;border-radius:6px;padding:.6rem 1rem}
.card b{display:block;font-size:1.4rem}.notice{background:#fff8e1;border:1px solid #f0c36d;padding:.5rem 1rem;border-radius:6px}
svg{max-width:100%;height:auto}
</style>`;

/** A 95% interval as the reports write it. */
export const intervalText = (i: { low: number; high: number }): string =>
  `95% CI ${pct(i.low)}–${pct(i.high)}`;

/** Each class's colour swatch and name. */
export function classLegend(classes: readonly string[]): string {
  return classes
    .map((c, k) => {
      const [r, g, b] = classColour(k);
      return `<span style="display:inline-block;width:12px;height:12px;background:rgb(${r},${g},${b})"></span> ${esc(c)}`;
    })
    .join(' &nbsp; ');
}

/** A confusion matrix as a table: rows the truth, columns the prediction. */
export function confusionTable(
  confusion: readonly (readonly number[])[],
  classes: readonly string[],
): string {
  const rows = confusion
    .map(
      (row, t) =>
        `<tr><th scope="row">${esc(classes[t] ?? '')}</th>${row.map((v) => `<td>${v}</td>`).join('')}</tr>`,
    )
    .join('');
  return `<table><tr><th></th>${classes.map((c) => `<th>${esc(c)}</th>`).join('')}</tr>${rows}</table>`;
}

/** The calibration and abstention the final model carries, and the coverage-accuracy curve; `unit`: what is answered. */
export function abstentionSection(abstention: AbstentionSummary, unit: 'image' | 'slide'): string {
  const { calibration } = abstention;
  return `<h2>Knowing when not to answer</h2>
<p>Temperature ${calibration.temperature}; threshold ${calibration.threshold > 1 ? `none reaches the target: the final model answers no ${unit}` : pct(calibration.threshold)} for ${pct(calibration.target)} accuracy on answered ${unit}s.
The curve uses the calibration fitted on all out-of-fold predictions (optimistic); the coverage above uses, for each fold, the one fitted on the other folds.</p>
${coverageChart(abstention.curve, calibration.target, unit)}`;
}

export function renderCrossValidation(report: CrossValidationReport): string {
  const classes = report.image.perClass.map((c) => c.className);
  const cvd = report.abstention.crossValidated;
  const interval = intervalText;
  const groups = report.groups
    .map(
      (g) =>
        `<tr><td>${esc(g.group)}</td><td>${esc(g.className)}</td><td>${g.fold}</td><td>${g.correct}/${g.images}</td><td>${pct(g.accuracy)}</td></tr>`,
    )
    .join('');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pathotype cross-validation: ${esc(report.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
${REPORT_STYLE}</head><body>
<h1>Cross-validation of ${esc(report.name)}</h1>
<p class="notice">Research use only, not for diagnosis. ${
    report.splitByImage
      ? `<strong id="estimate">${esc(estimateLabel(true))}</strong>: every image was its own group (no patient ids), so the folds split images and a patient's other images may have been seen in training`
      : `<span id="estimate">${esc(estimateLabel(false))}</span>: every image was predicted by a model that never saw its patient`
  }
(${report.folds.length} folds, ${report.groups.length} ${report.splitByImage ? 'groups' : 'patients'}, ${report.images.length} images; ${esc(report.rule)} vote).</p>
<div class="cards">
<div class="card">image accuracy<b>${pct(report.image.accuracy)}</b>${interval(report.accuracyInterval)}</div>
<div class="card">balanced accuracy<b>${pct(report.image.balancedAccuracy)}</b>${interval(report.balancedAccuracyInterval)}</div>
<div class="card">patients mostly right<b>${pct(report.groupsMostlyRight)}</b>over half their images</div>
<div class="card">answered (threshold from other folds)<b>${pct(cvd.coverage)}</b>${cvd.answeredAccuracy === null ? 'none answered' : `${pct(cvd.answeredAccuracy)} of them right`}</div>
</div>
<p>Intervals: percentile bootstrap over patients (images of one patient move together). Chance is ${pct(1 / Math.max(1, classes.length))}.</p>
<h2>Per patient</h2><p>${classLegend(classes)}</p>${patientChart(report.groups, classes)}
<table><tr><th>patient</th><th>class</th><th>fold</th><th>right</th><th>accuracy</th></tr>${groups}</table>
<h2>Confusion (rows: truth, columns: predicted)</h2>
${confusionTable(report.image.confusion, classes)}
${abstentionSection(report.abstention, 'image')}
<h2>Folds</h2>
<table><tr><th>fold</th><th>patients</th><th>images</th><th>image accuracy</th><th>patch accuracy</th></tr>${report.folds
    .map(
      (f) =>
        `<tr><td>${f.fold}</td><td>${f.groups}</td><td>${f.images}</td><td>${pct(f.imageAccuracy)}</td><td>${pct(f.patchAccuracy)}</td></tr>`,
    )
    .join('')}</table>
<p>${esc(report.createdAt)}</p>
</body></html>
`;
}

/** Writes cross-validation.json and cross-validation.html into `dir`; returns the JSON's path. */
export async function writeCrossValidation(dir: string, report: CrossValidationReport): Promise<string> {
  const file = path.join(dir, 'cross-validation.json');
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(path.join(dir, 'cross-validation.html'), renderCrossValidation(report));
  return file;
}
