/**
 * What a package keeps of the images it was trained on, whatever the method (probe, MIL,
 * fine-tuned): each training image is run through the finished package exactly as `serve` will
 * run an upload (the same checks, preprocessing and network), and the package keeps their mean
 * patch features with each one's distance to the other patients' images (an input's atypicality,
 * predict/atypicality.ts), the distributions of their scale, stain and focus (the drift page's
 * yardstick), and the SHA-1 of every training image and the SHA-256 of every patient id (so a
 * challenger is compared with the active model only on cases neither trained on). A package that
 * learnt from slides keeps the same of its training slides instead, from their bags.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import { Catalog, type ImageRecord } from '../acquire/catalog.js';
import { LIMITS } from '../limits.js';
import { quantile } from '../stats.js';
import {
  REFERENCE_QUANTILES,
  updateManifest,
  type ModelManifest,
  type PackagedReference,
  type Quantiles,
} from '../model/package.js';
import { writeTensors } from '../model/tensors-file.js';
import {
  buildReference,
  REFERENCE_VECTORS,
  type ReferenceImage,
  type ReferenceUnit,
} from '../predict/atypicality.js';
import { Predictor } from '../predict/predictor.js';
import type { StoredImage } from '../prepare/patch-store.js';
import type { Workspace } from '../workspace.js';
import type { SlideSignals } from './slide-bags.js';
import type { TrainOptions, TrainResult } from './run.js';

const REFERENCE_FILE = 'reference';
export const TRAINING_SET_FILE = 'training-set.json';
/** Images predicted together: their patches share batches. */
const CHUNK = 8;

/** A patient id as a package keeps it: hashed, so a package handed on carries no patient's id. */
export function patientHash(patient: string): string {
  return createHash('sha256').update(`pathotype-patient:${patient}`).digest('hex');
}

/** What a package trained on: every training image's SHA-1, every patient's hash. */
export interface TrainingSet {
  images: string[];
  patients: string[];
}

function quantiles(values: readonly number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  return REFERENCE_QUANTILES.map((q) => Number(quantile(sorted, q).toPrecision(4)));
}

/** Scores as kept in model.json: six significant digits. */
const significant = (v: number): number => Number(v.toPrecision(6));

/** At most `limit` of the records, spread evenly over them (the catalog's order: by class). */
function spread<T>(items: readonly T[], limit: number): T[] {
  if (items.length <= limit) return [...items];
  return Array.from({ length: limit }, (_, i) => items[Math.floor((i * items.length) / limit)] as T);
}

interface Measured {
  images: ReferenceImage[];
  scale: number[];
  focus: number[];
  haematoxylin: number[];
  eosin: number[];
}

async function measure(predictor: Predictor, records: readonly ImageRecord[]): Promise<Measured | null> {
  const m: Measured = { images: [], scale: [], focus: [], haematoxylin: [], eosin: [] };
  for (let start = 0; start < records.length; start += CHUNK) {
    const chunk = records.slice(start, start + CHUNK);
    const results = await predictor.predictWithFeatures(
      chunk.map((r) => ({ source: r.path, name: r.fileName, ...(r.scale ? { scale: r.scale } : {}) })),
    );
    for (const [i, result] of results.entries()) {
      // An image the server would refuse (blurred, folded) is no yardstick for what it accepts.
      if (result.status === 'refused') continue;
      const inputs = result.prediction.inputs;
      if (!result.features || !inputs) return null;
      m.images.push({
        features: result.features,
        stain: [inputs.haematoxylin, inputs.eosin],
        group: chunk[i]?.caseId ?? '',
      });
      if (result.prediction.scale !== null) m.scale.push(result.prediction.scale);
      m.focus.push(inputs.focus);
      m.haematoxylin.push(inputs.haematoxylin);
      m.eosin.push(inputs.eosin);
    }
  }
  return m;
}

/**
 * Adds the reference to a package just written from `images` of a patch store: its tensors, the
 * training set and the manifest's `reference`. A package whose network gives no features (a
 * spec without the zoo's classifier layer) or none of whose images could be read keeps none.
 */
export async function writeTrainingReference(
  workspace: Workspace,
  packageDir: string,
  images: readonly StoredImage[],
  onNotice?: (message: string) => void,
): Promise<ModelManifest | undefined> {
  const catalog = Catalog.open(workspace);
  let records: ImageRecord[];
  try {
    records = images.map((i) => catalog.image(i.imageId)).filter((r): r is ImageRecord => r !== undefined);
  } finally {
    catalog.close();
  }
  const readable = records.filter((r) => existsSync(r.path));
  const predictor = await Predictor.load(packageDir);
  let measured: Measured | null;
  try {
    measured = await measure(predictor, spread(readable, LIMITS.referenceImages));
  } finally {
    await predictor.close();
  }
  if (!measured || measured.images.length < 2) {
    onNotice?.(
      'the package keeps no reference of its training images: the atypicality of its inputs is unknown',
    );
    return undefined;
  }
  const trainingSet: TrainingSet = {
    images: [...new Set(records.map((r) => r.sha1))].sort(),
    patients: [...new Set(records.map((r) => patientHash(r.caseId)))].sort(),
  };
  return writeReference(packageDir, measured, trainingSet, 'images');
}

/** Writes a reference's tensors, the training set and the manifest's `reference`. */
async function writeReference(
  packageDir: string,
  measured: Measured,
  trainingSet: TrainingSet,
  unit: ReferenceUnit,
): Promise<ModelManifest> {
  const reference = buildReference(measured.images, unit);
  await writeTensors(path.join(packageDir, REFERENCE_FILE), [
    { name: REFERENCE_VECTORS, shape: [measured.images.length, reference.dims], data: reference.vectors },
  ]);
  await writeFile(path.join(packageDir, TRAINING_SET_FILE), `${JSON.stringify(trainingSet)}\n`);
  const packaged: PackagedReference = {
    file: REFERENCE_FILE,
    atypicality: {
      method: 'knn-and-stain',
      ...(unit === 'slides' ? { unit } : {}),
      k: reference.k,
      dims: reference.dims,
      images: measured.images.length,
      patients: new Set(measured.images.map((i) => i.group)).size,
      featureScores: reference.featureScores.map(significant),
      stain: {
        mean: reference.stain.mean,
        precision: reference.stain.precision,
        scores: reference.stain.scores.map(significant),
      },
      scores: reference.scores.map((s) => Number(s.toFixed(2))),
    },
    inputs: {
      scale: measured.scale.length > 0 ? quantiles(measured.scale) : null,
      focus: quantiles(measured.focus),
      haematoxylin: quantiles(measured.haematoxylin),
      eosin: quantiles(measured.eosin),
    },
    trainingSet: TRAINING_SET_FILE,
  };
  return updateManifest(packageDir, (m) => ({ ...m, reference: packaged }));
}

/** A slide and its patient as a slide-trained package's reference keeps them. */
export interface ReferenceSlide {
  patient: string;
  signals: SlideSignals | null;
}

/**
 * Adds the reference of a slide-trained package: each training slide's mean tile features and
 * its measures from its bag (the same as a prediction of the slide takes), scored against the
 * other patients' slides; the training set names the patients (a slide file is not hashed whole).
 */
export async function writeSlideReference(
  packageDir: string,
  slides: readonly ReferenceSlide[],
  onNotice?: (message: string) => void,
): Promise<ModelManifest | undefined> {
  const m: Measured = { images: [], scale: [], focus: [], haematoxylin: [], eosin: [] };
  for (const { patient, signals } of slides) {
    if (!signals) continue;
    const { inputs } = signals;
    m.images.push({
      features: Float32Array.from(signals.meanFeatures),
      stain: [inputs.haematoxylin, inputs.eosin],
      group: patient,
    });
    m.focus.push(inputs.focus);
    m.haematoxylin.push(inputs.haematoxylin);
    m.eosin.push(inputs.eosin);
  }
  if (new Set(m.images.map((i) => i.group)).size < 2) {
    onNotice?.(
      'the package keeps no reference of its training slides (fewer than two patients): the atypicality of its inputs is unknown',
    );
    return undefined;
  }
  const patients = [...new Set(slides.map((s) => patientHash(s.patient)))].sort();
  return writeReference(packageDir, m, { images: [], patients }, 'slides');
}

/** A training result with its package's reference added (train/ calls this for every method). */
export async function withTrainingReference(
  result: TrainResult,
  workspace: Workspace,
  images: readonly StoredImage[],
  options: Pick<TrainOptions, 'reference' | 'onNotice'>,
): Promise<TrainResult> {
  if (options.reference === false) return result;
  const manifest = await writeTrainingReference(workspace, result.packageDir, images, options.onNotice);
  return manifest ? { ...result, manifest } : result;
}
