/**
 * The slide cross-validation report: one self-contained HTML file (inline styles, PNG thumbnails
 * as data URIs, no script) with the figures per slide and per patient and their intervals, each
 * slide's true and predicted class, confidence, quality summary and thumbnail, the slides left
 * out and why, the confusion matrices and the abstention curve.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { percent as pct } from '../format.js';
import { escapeHtml as esc } from '../html.js';
import { estimateLabel } from './cross-validation.js';
import { abstentionSection, classLegend, confusionTable, intervalText, REPORT_STYLE } from './cv-report.js';
import type { SlideCrossValidationReport, SlideOutcome } from './slide-cross-validation.js';

/** A slide's quality summary in a few words: tissue, usable tiles, and what the checks refused. */
function qualityText(quality: SlideOutcome['quality']): string {
  const refused = Object.entries(quality.refused)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n}`);
  return (
    `${quality.tissueMm2.toFixed(2)} mm² tissue; ${quality.usable} of ${quality.tiles} tiles usable` +
    (refused.length > 0 ? `; refused: ${refused.join(', ')}` : '') +
    (quality.outsideAnnotations > 0 ? `; ${quality.outsideAnnotations} outside the annotations` : '')
  );
}

function slideRows(report: SlideCrossValidationReport, thumbnails: ReadonlyMap<string, string>): string {
  return report.slides
    .map((s) => {
      const image = thumbnails.get(s.slide);
      const thumb = image
        ? `<img src="${image}" alt="${esc(`${s.slide}: ${report.method === 'mil' ? 'tile weights' : 'tile classes'}`)}" class="thumb">`
        : '';
      const right = s.predicted === s.className;
      return (
        `<tr><td>${thumb}</td><td>${esc(s.slide)}</td><td>${esc(s.patient)}</td><td>${s.fold}</td><td>${esc(s.className)}</td>` +
        `<td class="${right ? 'right' : 'wrong'}">${esc(s.predicted)}</td><td>${pct(s.confidence)}${s.answered ? '' : ' (uncertain)'}</td>` +
        `<td class="quality">${esc(qualityText(s.quality))}</td></tr>`
      );
    })
    .join('');
}

function excludedSection(report: SlideCrossValidationReport): string {
  if (report.excluded.length === 0)
    return `<p>No slide was left out: every slide had at least ${report.minUsableTiles} usable tiles.</p>`;
  return `<p>${report.excluded.length} slide(s) had fewer than ${report.minUsableTiles} usable tiles and were left out of training and of every figure:</p>
<table><tr><th>slide</th><th>patient</th><th>class</th><th>why</th></tr>${report.excluded
    .map(
      (e) =>
        `<tr><td>${esc(e.slide)}</td><td>${esc(e.patient)}</td><td>${esc(e.className)}</td><td class="quality">${esc(e.reason)}</td></tr>`,
    )
    .join('')}</table>`;
}

export function renderSlideCrossValidation(
  report: SlideCrossValidationReport,
  thumbnails: ReadonlyMap<string, string>,
): string {
  const classes = report.slide.perClass.map((c) => c.className);
  const cvd = report.abstention.crossValidated;
  const patients = report.patients
    .map(
      (p) =>
        `<tr><td>${esc(p.patient)}</td><td>${p.fold}</td><td>${p.slides}</td><td>${esc(p.className)}</td>` +
        `<td class="${p.predicted === p.className ? 'right' : 'wrong'}">${esc(p.predicted)}</td><td>${pct(p.confidence)}</td></tr>`,
    )
    .join('');
  const bag =
    report.aggregation === 'patient' ? "each patient's slides pooled into one bag" : 'one bag per slide';
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>pathotype slide cross-validation: ${esc(report.name)}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
${REPORT_STYLE}
<style>.thumb{display:block;max-width:160px;background:#f4f4f2;border:1px solid #ccc}.right{color:#006d2c}.wrong{color:#b30000;font-weight:600}
td.quality{text-align:left;font-size:12px;max-width:22rem}</style></head><body>
<h1>Slide cross-validation of ${esc(report.name)}</h1>
<p class="notice">Research use only, not for diagnosis. <span id="estimate">${esc(estimateLabel(false))}</span>: every slide was predicted
by a head that never saw its patient (${report.folds.length} folds${report.foldsFromManifest ? " from the manifest's fold column" : ' of patients, stratified by class, seeded'};
${report.patients.length} patients, ${report.slides.length} slides).</p>
<div class="cards">
<div class="card">slide accuracy<b>${pct(report.slide.accuracy)}</b>${intervalText(report.slideAccuracyInterval)}</div>
<div class="card">slide balanced accuracy<b>${pct(report.slide.balancedAccuracy)}</b>${intervalText(report.slideBalancedAccuracyInterval)}</div>
<div class="card">patient accuracy<b>${pct(report.patient.accuracy)}</b>${intervalText(report.patientAccuracyInterval)}</div>
<div class="card">patient balanced accuracy<b>${pct(report.patient.balancedAccuracy)}</b>${intervalText(report.patientBalancedAccuracyInterval)}</div>
<div class="card">slides answered (threshold from other folds)<b>${pct(cvd.coverage)}</b>${cvd.answeredAccuracy === null ? 'none answered' : `${pct(cvd.answeredAccuracy)} of them right`}</div>
</div>
<p>Method ${esc(report.method)} (${esc(report.rule)} vote), ${bag}; tiles at ${report.mpp.toFixed(4)} um/px; training sees at most ${report.maxTilesPerBag} tiles of a bag at a time, a slide answers from its whole bag.
A patient's answer is its fold's head on all its slides' tiles as one bag. Intervals: percentile bootstrap over patients. Chance is ${pct(1 / Math.max(1, classes.length))}.</p>
<h2>Slides left out</h2>
${excludedSection(report)}
<h2>Per slide</h2>
<p>Thumbnails: ${report.rule === 'attention' ? "each tile's weight in its slide's answer (darker: more)" : `each tile's class under the fold's head (${classLegend(classes)})`}, drawn at the tiles' coordinates on the slide.</p>
<table><tr><th></th><th>slide</th><th>patient</th><th>fold</th><th>class</th><th>predicted</th><th>confidence</th><th>quality</th></tr>${slideRows(report, thumbnails)}</table>
<h2>Per patient</h2>
<table><tr><th>patient</th><th>fold</th><th>slides</th><th>class</th><th>predicted</th><th>confidence</th></tr>${patients}</table>
<h2>Confusion (rows: truth, columns: predicted)</h2>
<p>Slides</p>${confusionTable(report.slide.confusion, classes)}
<p>Patients</p>${confusionTable(report.patient.confusion, classes)}
${abstentionSection(report.abstention, 'slide')}
<h2>Folds</h2>
<table><tr><th>fold</th><th>patients</th><th>slides</th><th>training bags</th><th>slide accuracy</th><th>patient accuracy</th></tr>${report.folds
    .map(
      (f) =>
        `<tr><td>${f.fold}</td><td>${f.patients}</td><td>${f.slides}</td><td>${f.trainingBags}</td><td>${pct(f.slideAccuracy)}</td><td>${pct(f.patientAccuracy)}</td></tr>`,
    )
    .join('')}</table>
<p>${esc(report.createdAt)}</p>
</body></html>
`;
}

/** Writes cross-validation.json and cross-validation.html into `dir`; returns the JSON's path. */
export async function writeSlideCrossValidation(
  dir: string,
  report: SlideCrossValidationReport,
  thumbnails: ReadonlyMap<string, string>,
): Promise<string> {
  const file = path.join(dir, 'cross-validation.json');
  await writeFile(file, `${JSON.stringify(report, null, 2)}\n`);
  await writeFile(path.join(dir, 'cross-validation.html'), renderSlideCrossValidation(report, thumbnails));
  return file;
}
