/**
 * Cross-validation on slides, grouped by patient: in each fold the recipe's head is fitted on
 * the bags of the other folds' patients and answers every held-out slide from its whole bag,
 * as the package answers it, and every held-out patient from all its slides' tiles as one bag.
 * Figures per slide and per patient, each with a bootstrap interval over patients; calibration
 * and abstention fitted on the out-of-fold slide scores, as for images (the package answers one
 * slide at a time). Each held-out slide also gets a thumbnail of what its fold's head saw: the
 * attention over its tiles, or each tile's class, drawn at the tiles' coordinates.
 */
import type { SlideFolds } from '../acquire/split.js';
import type { VoteRule } from '../engine/pooling.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { slideOverlayPng } from '../predict/slide-heatmap.js';
import { answer } from '../predict/vote.js';
import type { Aggregation } from '../train/config.js';
import type { FrozenBaseRecipe } from '../train/frozen-base.js';
import { slideName, type SlideBag, type SlideBagsResult, type SlideQuality } from '../train/slide-bags.js';
import {
  fitSlideHead,
  slideVoteRule,
  tileBags,
  type SlideHead,
  type TileBag,
} from '../train/slide-training.js';
import { DEFAULT_TARGET_ACCURACY } from './calibration.js';
import {
  abstentionOf,
  bootstrapOverGroups,
  type AbstentionSummary,
  type ComparableRun,
  type Interval,
} from './cross-validation.js';
import { classificationMetrics, type ClassificationMetrics } from './metrics.js';

/** One slide, predicted by the head of the fold that held its patient out. */
export interface SlideOutcome {
  /** Its path relative to the manifest. */
  slide: string;
  patient: string;
  className: string;
  fold: number;
  predicted: string;
  /** Centred class scores of its whole bag: what calibration is fitted on. */
  scores: number[];
  /** Calibrated by the other folds' out-of-fold slides, and whether that calibration answers it. */
  confidence: number;
  answered: boolean;
  quality: SlideQuality;
}

/** One patient, predicted from all its slides' tiles as one bag by its fold's head. */
export interface PatientOutcome {
  patient: string;
  className: string;
  fold: number;
  slides: number;
  predicted: string;
  scores: number[];
  /** Under the temperature fitted on the other folds' slides. */
  confidence: number;
}

export interface SlideFoldSummary {
  fold: number;
  slides: number;
  patients: number;
  /** Bags the fold's head learnt from (slides, or patients with `aggregation: patient`). */
  trainingBags: number;
  slideAccuracy: number;
  patientAccuracy: number;
}

export interface SlideCrossValidationReport {
  kind: 'slides';
  name: string;
  method: FrozenBaseRecipe['method'];
  /** The package's vote rule: its answer on a slide's tiles is the head on the slide's bag. */
  rule: VoteRule;
  aggregation: Aggregation;
  mpp: number;
  maxTilesPerBag: number;
  minUsableTiles: number;
  /** The manifest's fold column fixed the folds. */
  foldsFromManifest: boolean;
  folds: SlideFoldSummary[];
  slide: ClassificationMetrics;
  slideAccuracyInterval: Interval;
  slideBalancedAccuracyInterval: Interval;
  patient: ClassificationMetrics;
  patientAccuracyInterval: Interval;
  patientBalancedAccuracyInterval: Interval;
  /** Fitted on the out-of-fold slide scores. */
  abstention: AbstentionSummary;
  slides: SlideOutcome[];
  patients: PatientOutcome[];
  /** Left out for too little usable tissue, never silently. */
  excluded: { slide: string; patient: string; className: string; reason: string; quality: SlideQuality }[];
  createdAt: string;
}

export interface SlideCrossValidation {
  name: string;
  config: FrozenBaseRecipe;
  classes: readonly string[];
  /** The usable slides' bags, read whole. */
  bags: readonly SlideBag[];
  folds: SlideFolds;
  excluded: SlideBagsResult['excluded'];
  preprocess: PreprocessConfig;
  onFold?: (summary: SlideFoldSummary, of: number) => void;
}

/** The longest side of a report's thumbnail, in pixels. */
const THUMBNAIL_SIDE = 160;

/** A held-out slide's thumbnail: its fold head's attention over its tiles, or each tile's class. */
async function thumbnail(bag: SlideBag, head: SlideHead, preprocess: PreprocessConfig): Promise<string> {
  const tiles = await head.tiles(bag);
  const classes = tiles.probabilities.length / Math.max(1, bag.count);
  const stride = bag.tileSize0 * (preprocess.tiles.stride / preprocess.tiles.patchSize);
  const { width, height } = bag.slide;
  const { png } = await slideOverlayPng(
    {
      slide: { width, height },
      tiling: { stride, cols: Math.ceil(width / stride), rows: Math.ceil(height / stride) },
      tiles: Array.from({ length: bag.count }, (_, k) => ({
        x: bag.coords[k * 2] ?? 0,
        y: bag.coords[k * 2 + 1] ?? 0,
        predicted: tiles.predicted[k] ?? 0,
        probabilities: Array.from(tiles.probabilities.subarray(k * classes, (k + 1) * classes)),
        ...(tiles.attention ? { attention: tiles.attention[k] ?? 0 } : {}),
      })),
    },
    tiles.attention ? 'attention' : 'classes',
    { maxOpacity: 0.9, maxSide: THUMBNAIL_SIDE, attentionFloor: 0.1 },
  );
  return `data:image/png;base64,${png.toString('base64')}`;
}

interface FoldAnswers {
  slides: { bag: SlideBag; fold: number; scores: number[] }[];
  patients: { bag: TileBag; fold: number; scores: number[] }[];
  thumbnails: Map<string, string>;
  folds: SlideFoldSummary[];
}

/** Each fold's head, fitted on the other folds' bags, answering its held-out slides and patients. */
async function answerFolds(request: SlideCrossValidation): Promise<FoldAnswers> {
  const { config, classes, bags, folds, preprocess } = request;
  const out: FoldAnswers = { slides: [], patients: [], thumbnails: new Map(), folds: [] };
  const foldOf = (bag: SlideBag): number => folds.foldOf.get(bag.slide.id) ?? -1;
  const dims = bags[0]?.dims ?? 0;
  const argmax = (scores: readonly number[]): string => classes[answer(scores).predicted] ?? '';
  for (const fold of folds.folds) {
    const held = bags.filter((b) => foldOf(b) === fold);
    if (held.length === 0) continue;
    const training = tileBags(
      bags.filter((b) => foldOf(b) !== fold),
      config.slides.aggregation,
      classes,
    );
    const head = await fitSlideHead(config, training, dims, classes.length);
    const slides = await Promise.all(
      held.map(async (bag) => ({ bag, fold, scores: await head.scores(bag) })),
    );
    const patients = await Promise.all(
      tileBags(held, 'patient', classes).map(async (bag) => ({ bag, fold, scores: await head.scores(bag) })),
    );
    for (const bag of held) out.thumbnails.set(slideName(bag.slide), await thumbnail(bag, head, preprocess));
    const right = <T extends { scores: number[] }>(items: T[], label: (item: T) => string): number =>
      items.filter((i) => argmax(i.scores) === label(i)).length / Math.max(1, items.length);
    const summary: SlideFoldSummary = {
      fold,
      slides: held.length,
      patients: patients.length,
      trainingBags: training.length,
      slideAccuracy: right(slides, (s) => s.bag.slide.label),
      patientAccuracy: right(patients, (p) => classes[p.bag.label] ?? ''),
    };
    out.slides.push(...slides);
    out.patients.push(...patients);
    out.folds.push(summary);
    request.onFold?.(summary, folds.folds.length);
  }
  return out;
}

/** Accuracy and balanced accuracy of items with their patient, each with a bootstrap interval over patients. */
function figures(
  items: readonly { group: string; label: number; predicted: number }[],
  classes: readonly string[],
): { metrics: ClassificationMetrics; accuracy: Interval; balancedAccuracy: Interval } {
  return {
    metrics: classificationMetrics(
      items.map((i) => i.label),
      items.map((i) => i.predicted),
      classes,
    ),
    ...bootstrapOverGroups(items, classes),
  };
}

/** Cross-validates the recipe on slide bags by patient; the report and each held-out slide's thumbnail (a PNG data URI). */
export async function crossValidateSlides(
  request: SlideCrossValidation,
): Promise<{ report: SlideCrossValidationReport; thumbnails: Map<string, string> }> {
  const { config, classes } = request;
  const answers = await answerFolds(request);
  const label = (name: string): number => classes.indexOf(name);
  const slideItems = answers.slides.map((s) => ({
    scores: s.scores,
    label: label(s.bag.slide.label),
    predicted: answer(s.scores).predicted,
    fold: s.fold,
    group: s.bag.slide.patient,
  }));
  const { abstention, judged, perFold } = abstentionOf(
    slideItems,
    answers.folds.map((f) => f.fold),
    DEFAULT_TARGET_ACCURACY,
  );
  const patientItems = answers.patients.map((p) => ({
    group: p.bag.patient,
    label: p.bag.label,
    predicted: answer(p.scores).predicted,
  }));
  const slide = figures(slideItems, classes);
  const patient = figures(patientItems, classes);
  const first = request.bags[0];
  const report: SlideCrossValidationReport = {
    kind: 'slides',
    name: request.name,
    method: config.method,
    rule: slideVoteRule(config),
    aggregation: config.slides.aggregation,
    mpp: first ? first.mpp : 0,
    maxTilesPerBag: config.slides.maxTilesPerBag,
    minUsableTiles: config.slides.minUsableTiles,
    foldsFromManifest: request.folds.fromManifest,
    folds: answers.folds,
    slide: slide.metrics,
    slideAccuracyInterval: slide.accuracy,
    slideBalancedAccuracyInterval: slide.balancedAccuracy,
    patient: patient.metrics,
    patientAccuracyInterval: patient.accuracy,
    patientBalancedAccuracyInterval: patient.balancedAccuracy,
    abstention,
    slides: answers.slides.map((s, k) => ({
      slide: slideName(s.bag.slide),
      patient: s.bag.slide.patient,
      className: s.bag.slide.label,
      fold: s.fold,
      predicted: classes[slideItems[k]?.predicted ?? 0] ?? '',
      scores: s.scores.map((v) => Number(v.toFixed(5))),
      confidence: Number((judged[k]?.confidence ?? 0).toFixed(4)),
      answered: judged[k]?.answered ?? false,
      quality: s.bag.quality,
    })),
    patients: answers.patients.map((p, k) => ({
      patient: p.bag.patient,
      className: classes[p.bag.label] ?? '',
      fold: p.fold,
      slides: p.bag.slides.length,
      predicted: classes[patientItems[k]?.predicted ?? 0] ?? '',
      scores: p.scores.map((v) => Number(v.toFixed(5))),
      confidence: Number(
        answer(p.scores, {
          temperature: perFold.get(p.fold)?.temperature ?? 1,
          threshold: 0,
        }).confidence.toFixed(4),
      ),
    })),
    excluded: request.excluded.map((e) => ({
      slide: slideName(e.slide),
      patient: e.slide.patient,
      className: e.slide.label,
      reason: e.reason,
      quality: e.quality,
    })),
    createdAt: new Date().toISOString(),
  };
  return { report, thumbnails: answers.thumbnails };
}

/** A slide cross-validation as `compare` pairs it: its slides by name, patient and class. */
export function comparableSlides(report: SlideCrossValidationReport): ComparableRun {
  return {
    name: report.name,
    unit: 'slides',
    images: report.slides.map((s) => ({
      fileName: s.slide,
      caseId: s.patient,
      className: s.className,
      predicted: s.predicted,
    })),
  };
}
