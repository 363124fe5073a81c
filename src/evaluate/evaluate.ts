/**
 * `pathotype evaluate`: the model on the held-out images of its patch store. Every patch is
 * predicted; each image is classified by majority vote (KNIME's rule) and by mean probability;
 * image- and patch-level metrics are computed; a JSON file and a self-contained HTML report
 * are written.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { ConfigError, PathotypeError } from '../errors.js';
import { resolveBf16, type Bf16Setting } from '../engine/precision.js';
import type { Catalog, ImageRecord, Partition } from '../acquire/catalog.js';
import { decodeRgb } from '../image/image-io.js';
import { PatchStore } from '../prepare/patch-store.js';
import { ensureDir, type Workspace } from '../workspace.js';
import { updateManifest, type ModelManifest } from '../model/package.js';
import { loadPackageRunner } from '../model/package-runner.js';
import { heatmapPng } from '../predict/heatmap.js';
import type { PatchGrid } from '../predict/predictor.js';
import { verdictOf, type Verdict } from '../predict/verdict.js';
import { classificationMetrics } from './metrics.js';
import { renderReport, type EvaluationReport } from './report.js';
import { predictStoredImages, type StoredImagePrediction } from '../predict/stored-patches.js';

export interface EvaluateOptions {
  store?: string;
  partition?: Partition;
  bf16?: Bf16Setting;
  /** Where evaluation.json and report.html go; default <package>/evaluation. */
  outDir?: string;
  /** Heatmap overlays in the report. */
  heatmaps?: number;
}

export async function evaluateModel(
  catalog: Catalog,
  workspace: Workspace,
  packageDir: string,
  options: EvaluateOptions = {},
): Promise<{ report: EvaluationReport; json: string; html: string }> {
  const started = performance.now();
  const bf16 = resolveBf16(options.bf16 ?? 'auto');
  const { manifest, runner } = await loadPackageRunner(packageDir, { bf16, engine: 'auto' });
  if (manifest.slides && !options.store)
    throw new ConfigError(
      `${manifest.name} learnt from slides: its figures are its cross-validation report (pathotype run --data MANIFEST.csv); give --store to evaluate it on a patch store`,
    );
  const storeName = options.store ?? manifest.data.store;
  const store = PatchStore.open(path.join(workspace.patchesDir, storeName));
  try {
    checkStoreFits(store, storeName, manifest);
    const partition = options.partition ?? 'test';
    const images = store.images.filter((i) => i.partition === partition);
    if (images.length === 0)
      throw new PathotypeError(
        'ERR_EVALUATE',
        `the store '${storeName}' has no ${partition} images: prepare it with a split`,
      );
    const predictions = await predictStoredImages(runner, store, images, { rule: manifest.vote, bf16 });
    const classes = manifest.classes;
    const truth = predictions.map((p) => p.label);
    const patchTruth: number[] = [];
    const patchPredicted: number[] = [];
    for (const p of predictions) {
      for (const c of p.vote.patchClasses) {
        patchTruth.push(p.label);
        patchPredicted.push(c);
      }
    }
    const byId = new Map(catalog.images().map((i) => [i.id, i]));
    const verdicts = predictions.map((p) => verdictOf(p.vote, classes, manifest.vote, manifest.calibration));
    const report: EvaluationReport = {
      model: {
        name: manifest.name,
        version: manifest.version,
        dir: packageDir,
        syntheticWeights: manifest.syntheticWeights ?? false,
      },
      store: storeName,
      partition,
      rule: manifest.vote,
      image: classificationMetrics(
        truth,
        predictions.map((p) => p.vote.predicted),
        classes,
      ),
      imageMajority: classificationMetrics(
        truth,
        predictions.map((p) => p.vote.byMajority),
        classes,
      ),
      imageMean: classificationMetrics(
        truth,
        predictions.map((p) => p.vote.byMean),
        classes,
      ),
      patch: classificationMetrics(patchTruth, patchPredicted, classes),
      ...(manifest.calibration ? { abstention: abstentionOf(predictions, verdicts) } : {}),
      images: predictions.map((p, k) => ({
        imageId: p.image.imageId,
        fileName: byId.get(p.image.imageId)?.fileName ?? String(p.image.imageId),
        className: p.image.className,
        caseId: p.image.caseId,
        ...(verdicts[k] as Verdict),
        scores: p.vote.imageScores.map((v) => Number(v.toFixed(5))),
      })),
      seconds: (performance.now() - started) / 1000,
      createdAt: new Date().toISOString(),
    };
    const heatmaps = await heatmapsFor(predictions, byId, store, classes, options.heatmaps ?? 6);
    const outDir = ensureDir(options.outDir ?? path.join(packageDir, 'evaluation'));
    const json = path.join(outDir, 'evaluation.json');
    const html = path.join(outDir, 'report.html');
    await writeFile(json, `${JSON.stringify(report, null, 2)}\n`);
    await writeFile(html, renderReport(report, manifest, heatmaps));
    await recordMetrics(packageDir, report);
    return { report, json, html };
  } finally {
    await store.close();
    await runner.close();
  }
}

function checkStoreFits(store: PatchStore, storeName: string, manifest: ModelManifest): void {
  const patchSize = manifest.preprocess.tiles.patchSize;
  if (store.patchSize !== patchSize) {
    throw new PathotypeError(
      'ERR_EVALUATE',
      `the store '${storeName}' has ${store.patchSize}px patches; the model takes ${patchSize}px`,
    );
  }
  if (store.manifest.classes.join() !== manifest.classes.join()) {
    throw new PathotypeError(
      'ERR_EVALUATE',
      `the store's classes (${store.manifest.classes.join(', ')}) differ from the model's (${manifest.classes.join(', ')})`,
    );
  }
}

/** Heatmaps for a few images: the wrong ones first, they teach the most. */
async function heatmapsFor(
  predictions: readonly StoredImagePrediction[],
  byId: Map<number, ImageRecord>,
  store: PatchStore,
  classes: readonly string[],
  count: number,
): Promise<{ title: string; png: Buffer }[]> {
  const heatmaps: { title: string; png: Buffer }[] = [];
  const chosen = [...predictions]
    .sort((a, b) => Number(a.vote.predicted === a.label) - Number(b.vote.predicted === b.label))
    .slice(0, count);
  for (const p of chosen) {
    const record = byId.get(p.image.imageId);
    if (!record) continue;
    const grid: PatchGrid = {
      cols: p.image.cols,
      rows: p.image.rows,
      patchSize: store.patchSize,
      stride: store.manifest.preprocess.tiles.stride,
      width: p.image.width,
      height: p.image.height,
      cells: Array.from({ length: p.vote.patchClasses.length }, (_, k) => [
        p.cells[k * 2] ?? 0,
        p.cells[k * 2 + 1] ?? 0,
        p.vote.patchClasses[k] ?? 0,
        p.vote.patchConfidence[k] ?? 0,
      ]),
      ...(p.vote.attention ? { attention: Array.from(p.vote.attention) } : {}),
    };
    try {
      const image = await decodeRgb(record.path, { width: p.image.width, height: p.image.height });
      const title = `${record.className}/${record.fileName}: predicted ${classes[p.vote.predicted] ?? ''}`;
      heatmaps.push({ title, png: await heatmapPng(image, grid, 700) });
      // A model that pools by attention: the patches it answered from, beside their classes.
      if (grid.attention)
        heatmaps.push({
          title: `${title} (attention)`,
          png: await heatmapPng(image, grid, 700, 'attention'),
        });
    } catch {
      // The image file is gone since prepare: the report goes without its heatmap.
    }
  }
  return heatmaps;
}

/** The package remembers its latest figures on each partition. */
async function recordMetrics(packageDir: string, report: EvaluationReport): Promise<void> {
  await updateManifest(packageDir, (m: ModelManifest) => ({
    ...m,
    metrics: {
      ...m.metrics,
      [report.partition]: {
        imageAccuracy: report.image.accuracy,
        imageAccuracyMajority: report.imageMajority.accuracy,
        imageAccuracyMean: report.imageMean.accuracy,
        balancedAccuracy: report.image.balancedAccuracy,
        kappa: report.image.kappa,
        patchAccuracy: report.patch.accuracy,
        images: report.imageMajority.n,
        evaluatedAt: report.createdAt,
      },
    },
  }));
}

/** How many images a calibrated model answers, and how many of those it gets right. */
function abstentionOf(
  predictions: readonly StoredImagePrediction[],
  verdicts: readonly Verdict[],
): NonNullable<EvaluationReport['abstention']> {
  const answered = predictions.filter((_, k) => verdicts[k]?.status === 'answered');
  const right = answered.filter((p) => p.vote.predicted === p.label).length;
  return {
    coverage: answered.length / Math.max(1, predictions.length),
    answered: answered.length,
    answeredAccuracy: answered.length > 0 ? right / answered.length : null,
  };
}
