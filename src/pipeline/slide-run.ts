/**
 * `pathotype run --data MANIFEST.csv`: a frozen-base recipe learnt from whole slides. The
 * recipe, the manifest and the folds are checked before any work; then each slide's tile
 * features are extracted once (or found in the cache), the recipe is cross-validated by patient
 * on the bags, and the package to deploy is trained on every usable slide, carrying the
 * calibration and abstention fitted on the out-of-fold slides. Run again, it extracts nothing.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';

import type { Catalog, SlideRecord } from '../acquire/catalog.js';
import { importSlideManifest } from '../acquire/slide-manifest.js';
import { slideFolds, type SlideFolds } from '../acquire/split.js';
import { manualSeed } from '../engine/network.js';
import { ConfigError, PathotypeError } from '../errors.js';
import { estimateLabel } from '../evaluate/cross-validation.js';
import { crossValidateSlides, type SlideCrossValidationReport } from '../evaluate/slide-cross-validation.js';
import { writeSlideCrossValidation } from '../evaluate/slide-cv-report.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { updateManifest } from '../model/package.js';
import { slidePreprocess } from '../prepare/prepare.js';
import type { FrozenBase, FrozenBaseRecipe } from '../train/frozen-base.js';
import type { PackageSource } from '../train/run.js';
import {
  extractSlideBags,
  readSlideBag,
  slideName,
  type SlideBag,
  type SlideBagProgress,
  type SlideBagsResult,
} from '../train/slide-bags.js';
import { tileBags, trainSlidePackage } from '../train/slide-training.js';
import { writeSlideReference } from '../train/training-reference.js';
import { ensureDir, runDirFor, type Workspace } from '../workspace.js';
import type { Preset } from './presets.js';
import { resolvePreset } from './run.js';
import { openSlideEncoder, slideRecipeConfig } from './slide-encoder.js';

export interface SlideRunOptions {
  preset: string;
  /** The slide manifest (CSV: slide, patient, label, and optionally mpp, fold, annotations). */
  manifest: string;
  /** Model and run name; default the preset's. */
  name?: string;
  /** Overrides merged into the preset (a config file's content). */
  overrides?: Record<string, unknown>;
  onStage?: (stage: string, detail: string) => void;
  onNotice?: (message: string) => void;
  onExtractProgress?: (progress: SlideBagProgress) => void;
  signal?: AbortSignal;
}

export interface SlideRunResult {
  preset: Preset;
  manifest: string;
  classes: string[];
  slides: number;
  patients: number;
  extraction: { extracted: number; cached: number; tiles: number; seconds: number };
  /** Slides left out for too little usable tissue, with their reason. */
  excluded: { slide: string; reason: string }[];
  crossValidation: { report: SlideCrossValidationReport; json: string; html: string };
  /** The package trained on every usable slide, carrying the cross-validated figures. */
  final?: { packageDir: string; slides: number; seconds: number };
  seconds: number;
}

/** What the run works on, every check passed: no slide has been read yet beyond its header. */
interface CheckedRun {
  preset: Preset;
  name: string;
  config: FrozenBaseRecipe;
  preprocess: PreprocessConfig;
  manifest: string;
  slides: SlideRecord[];
  classes: string[];
  folds: SlideFolds;
}

/** The recipe, the manifest and the folds, checked before any work; the manifest recorded in the catalog. */
async function checkRun(
  catalog: Catalog,
  workspace: Workspace,
  options: SlideRunOptions,
): Promise<CheckedRun> {
  const stage = options.onStage ?? (() => undefined);
  const preset = resolvePreset(options.preset, options.overrides);
  const name = options.name ?? preset.name;
  const config = slideRecipeConfig(preset, name, workspace, options.onNotice);
  const preprocess = await slidePreprocess(preset.prepare);
  const manifest = path.resolve(options.manifest);
  const given = config.slides.classes;
  stage('data', `checking and importing the slide manifest ${manifest}`);
  const imported = await importSlideManifest(catalog, manifest, given ? { classes: given } : {});
  const slides = catalog.slides().filter((s) => s.source === manifest);
  const classes = given ?? [...new Set(slides.map((s) => s.label))].sort();
  if (classes.length < 2)
    throw new ConfigError(
      `the manifest's slides have one label (${classes.join()}): there is nothing to tell apart`,
    );
  const folds = slideFolds(slides, preset.split);
  stage(
    'data',
    `${imported.slides} slides of ${imported.patients} patients (${Object.entries(imported.perClass)
      .map(([c, n]) => `${c} ${n}`)
      .join(
        ', ',
      )}); ${folds.folds.length} folds of patients${folds.fromManifest ? " from the manifest's fold column" : ''}`,
  );
  return { preset, name, config, preprocess, manifest, slides, classes, folds };
}

/** Every slide's bag, extracted once per slide and base (or found in the cache); those left out said, never silently. */
async function extract(
  run: CheckedRun,
  workspace: Workspace,
  base: FrozenBase,
  options: SlideRunOptions,
): Promise<{ result: SlideBagsResult; bags: SlideBag[]; seconds: number }> {
  const stage = options.onStage ?? (() => undefined);
  const started = performance.now();
  const result = await extractSlideBags({
    workspace,
    slides: run.slides,
    classes: run.classes,
    preprocess: run.preprocess,
    features: base.features,
    minUsableTiles: run.config.slides.minUsableTiles,
    ...(options.onExtractProgress ? { onProgress: options.onExtractProgress } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
  });
  if (options.signal?.aborted)
    throw new PathotypeError('ERR_TRAIN_STOPPED', 'stopped while extracting slide features');
  const seconds = (performance.now() - started) / 1000;
  const bags: SlideBag[] = [];
  for (const file of result.bags) bags.push(await readSlideBag(file));
  const tiles = bags.reduce((n, b) => n + b.count, 0);
  stage(
    'features',
    `${result.extracted} slides extracted, ${result.cached} from the cache (${base.features.cacheKey}); ${tiles} usable tiles in ${seconds.toFixed(1)} s`,
  );
  for (const e of result.excluded)
    stage('left out', `${slideName(e.slide)} (${e.slide.patient}): ${e.reason}`);
  const labels = new Set(bags.map((b) => b.slide.label));
  if (labels.size < 2)
    throw new PathotypeError(
      'ERR_TRAIN',
      `after leaving out slides with too little usable tissue, only ${[...labels].join(', ') || 'no class'} remain${labels.size === 1 ? 's' : ''}: nothing to learn`,
    );
  return { result, bags, seconds };
}

/** What the package learnt from: the slides' classes, preprocessing, and a record of its bags. */
function slideSource(
  run: CheckedRun,
  base: FrozenBase,
  bags: readonly SlideBag[],
  result: SlideBagsResult,
): PackageSource {
  const tiles = bags.reduce((n, b) => n + b.count, 0);
  const fingerprint = createHash('sha1')
    .update(
      JSON.stringify({ bags: result.bags.map((b) => path.basename(b.file)).sort(), classes: run.classes }),
    )
    .update(JSON.stringify(run.config.slides))
    .digest('hex');
  return {
    classes: run.classes,
    preprocess: run.preprocess,
    data: { store: '', split: null, fingerprint, images: bags.length, patches: tiles },
    slides: {
      aggregation: run.config.slides.aggregation,
      mpp: bags[0]?.mpp ?? run.preprocess.mpp ?? 0,
      slides: bags.length,
      patients: new Set(bags.map((b) => b.slide.patient)).size,
      tiles,
      maxTilesPerBag: run.config.slides.maxTilesPerBag,
      minUsableTiles: run.config.slides.minUsableTiles,
      excluded: result.excluded.map((e) => ({ slide: slideName(e.slide), reason: e.reason })),
      manifest: run.manifest,
      encoder: base.features.cacheKey,
    },
  };
}

/** The cross-validated figures a slide package carries, in the fields the portal and the API read. */
function carriedFigures(report: SlideCrossValidationReport, file: string): Record<string, unknown> {
  const cvd = report.abstention.crossValidated;
  return {
    report: file,
    unit: 'slides',
    rule: report.rule,
    aggregation: report.aggregation,
    folds: report.folds.length,
    groups: report.patients.length,
    images: report.slides.length,
    slides: report.slides.length,
    imageAccuracy: report.slide.accuracy,
    accuracyInterval: report.slideAccuracyInterval,
    balancedAccuracy: report.slide.balancedAccuracy,
    balancedAccuracyInterval: report.slideBalancedAccuracyInterval,
    patientAccuracy: report.patient.accuracy,
    patientAccuracyInterval: report.patientAccuracyInterval,
    splitByImage: false,
    estimate: estimateLabel(false),
    coverage: cvd.coverage,
    answeredAccuracy: cvd.answeredAccuracy,
  };
}

export async function runSlidePipeline(
  catalog: Catalog,
  workspace: Workspace,
  options: SlideRunOptions,
): Promise<SlideRunResult> {
  const started = performance.now();
  const stage = options.onStage ?? (() => undefined);
  const run = await checkRun(catalog, workspace, options);
  const { preset, config, classes } = run;
  const encoder = await openSlideEncoder(workspace, preset, classes, {
    name: run.name,
    onStage: stage,
    ...(options.onNotice ? { onNotice: options.onNotice } : {}),
  });
  const { base } = encoder;
  manualSeed(config.seed);
  try {
    const { result, bags, seconds } = await extract(run, workspace, base, options);
    stage(
      'cross-validation',
      `${run.folds.folds.length} folds of patients, ${config.method} on ${config.slides.aggregation} bags`,
    );
    const { report, thumbnails } = await crossValidateSlides({
      name: run.name,
      config,
      classes,
      bags,
      folds: run.folds,
      excluded: result.excluded,
      preprocess: run.preprocess,
      onFold: (f, of) =>
        stage(
          'fold',
          `${f.fold} (${of} in all): ${f.slides} slides of ${f.patients} patients held out, slide accuracy ${(f.slideAccuracy * 100).toFixed(1)}%`,
        ),
    });
    const dir = ensureDir(runDirFor(workspace, run.name));
    const json = await writeSlideCrossValidation(dir, report, thumbnails);
    const out: SlideRunResult = {
      preset,
      manifest: run.manifest,
      classes,
      slides: run.slides.length,
      patients: new Set(run.slides.map((s) => s.patient)).size,
      extraction: {
        extracted: result.extracted,
        cached: result.cached,
        tiles: bags.reduce((n, b) => n + b.count, 0),
        seconds,
      },
      excluded: report.excluded.map((e) => ({ slide: e.slide, reason: e.reason })),
      crossValidation: { report, json, html: path.join(dir, 'cross-validation.html') },
      seconds: 0,
    };
    if (preset.final !== false) {
      const finalStarted = performance.now();
      stage('final', `training '${run.name}' on all ${bags.length} usable slides`);
      const trained = await trainSlidePackage(
        { workspace, config, source: slideSource(run, base, bags, result), base, started: finalStarted },
        tileBags(bags, config.slides.aggregation, classes),
        classes.length,
      );
      await updateManifest(trained.packageDir, (m) => ({
        ...m,
        calibration: report.abstention.calibration,
        metrics: { ...m.metrics, crossValidation: carriedFigures(report, json) },
      }));
      await writeSlideReference(
        trained.packageDir,
        bags.map((b) => ({ patient: b.slide.patient, signals: b.signals })),
        options.onNotice,
      );
      out.final = {
        packageDir: trained.packageDir,
        slides: bags.length,
        seconds: (performance.now() - finalStarted) / 1000,
      };
    }
    out.seconds = (performance.now() - started) / 1000;
    return out;
  } finally {
    await encoder.close();
  }
}
