/**
 * Champion and challenger: a version of a name that is not active is compared with the active
 * one on the reviewed cases neither trained on, before an admin may promote it. The cases are
 * every settled image case (readers agree, or a third sided with one) whose label is one of the
 * model's classes, newest first up to LIMITS.comparisonCases, less those whose image (SHA-1) or
 * patient either package's training set holds. Each version's answer is the record's where it
 * answered the case, else it is run on the kept image (through the inference queue, answers kept
 * for the next comparison). The accuracy difference has a 95% interval from the paired bootstrap
 * over patients of `pathotype compare`. Promoting, and rolling back to a version that was active
 * before, is one append-only promotion, audited by its route.
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { compareCrossValidations, type Interval } from '../evaluate/cross-validation.js';
import { LIMITS } from '../limits.js';
import type { CaseAnswer, Promotion, StoredComparison } from '../store/model-versions.js';
import { consensusOf, requiredReaders, reviewsByCase } from '../store/review-cases.js';
import { OTHER_LABEL } from '../store/reviews.js';
import { patientHash, TRAINING_SET_FILE, type TrainingSet } from '../train/training-reference.js';
import { QueueFullError } from './inference-limiter.js';
import type { ServedModel } from './served-models.js';
import type { PredictionService } from './service.js';

// A type, not an interface: the API's response schema types take it as an open record.
export type ComparisonResult = {
  cases: number;
  patients: number;
  /** Reviewed cases left out, and why. */
  excluded: { trainedOn: number; imageNotKept: number; unsettled: number; notAClass: number };
  /** Versions whose package does not record what it trained on: nothing could be left out for them. */
  trainingSetUnknown: string[];
  championAccuracy: number | null;
  challengerAccuracy: number | null;
  /** Challenger minus champion, with its 95% interval (paired bootstrap over patients). */
  difference: Interval | null;
  onlyChampion: number;
  onlyChallenger: number;
};

export type Comparison = StoredComparison<ComparisonResult>;

function trainingSetOf(model: ServedModel): TrainingSet | null {
  const file = path.join(model.dir, model.predictor.manifest.reference?.trainingSet ?? TRAINING_SET_FILE);
  if (!model.predictor.manifest.reference || !existsSync(file)) return null;
  return JSON.parse(readFileSync(file, 'utf8')) as TrainingSet;
}

/** The challenger: a version of the name this server holds that is not the active one. */
export function challengerOf(service: PredictionService, name: string, version: number): ServedModel {
  const model = service.models.get(`${name}@${version}`);
  if (!model) throw new PathotypeError('ERR_NOT_FOUND', `this server holds no ${name}@${version}`);
  return model;
}

async function answerOf(
  service: PredictionService,
  model: ServedModel,
  caseId: string,
  file: string,
): Promise<CaseAnswer> {
  const cached = await service.store.models.answer('prediction', caseId, model.id);
  if (cached) return cached;
  const source = readFileSync(file);
  let answer: CaseAnswer | undefined;
  while (!answer) {
    try {
      const [result] = await service.limiter.run(() => model.predictor.predictImagesSettled([{ source }]));
      answer = !result
        ? { refused: 'ERR_INTERNAL' }
        : result.status === 'refused'
          ? { refused: result.code }
          : { predicted: result.predicted, status: result.status, confidence: result.confidence };
    } catch (error) {
      // Uploads come first: when their queue is full the comparison waits its turn.
      if (!(error instanceof QueueFullError)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  await service.store.models.saveAnswer('prediction', caseId, model.id, answer);
  return answer;
}

interface Eligible {
  caseId: string;
  group: string;
  label: string;
  file: string;
  recordModel: string;
  recordPredicted: string;
}

async function eligibleCases(
  service: PredictionService,
  models: readonly ServedModel[],
  excluded: ComparisonResult['excluded'],
): Promise<Eligible[]> {
  const required = await requiredReaders(service.store.db);
  const classes = models[0]?.predictor.manifest.classes ?? [];
  const sets = models.map(trainingSetOf).filter((s): s is TrainingSet => s !== null);
  const images = new Set(sets.flatMap((s) => s.images));
  const patients = new Set(sets.flatMap((s) => s.patients));
  const cases = [
    ...reviewsByCase(await service.store.reviews.list({ caseKind: 'prediction' })).values(),
  ].reverse();
  const eligible: Eligible[] = [];
  for (const reviews of cases) {
    if (eligible.length >= LIMITS.comparisonCases) break;
    const first = reviews[0];
    if (!first) continue;
    const { label, status } = consensusOf(reviews, required);
    if (status !== 'settled') {
      excluded.unsettled++;
      continue;
    }
    if (label === OTHER_LABEL || !classes.includes(label)) {
      excluded.notAClass++;
      continue;
    }
    const record = await service.store.predictions.get(first.caseId);
    const file = record ? service.store.predictions.imagePath(record) : null;
    if (!record || !file) {
      excluded.imageNotKept++;
      continue;
    }
    const patient = [...reviews].reverse().find((r) => r.patient)?.patient ?? null;
    const sha1 = createHash('sha1').update(readFileSync(file)).digest('hex');
    if (images.has(sha1) || (patient !== null && patients.has(patientHash(patient)))) {
      excluded.trainedOn++;
      continue;
    }
    eligible.push({
      caseId: record.id,
      group: patient ?? record.id,
      label,
      file,
      recordModel: record.modelId,
      recordPredicted: record.result.predicted,
    });
  }
  return eligible;
}

/** Compares the challenger with the name's active version on the reviewed cases neither trained on; stored. */
export async function compareWithChampion(
  service: PredictionService,
  challenger: ServedModel,
  actor: string,
): Promise<Comparison> {
  await service.models.refresh();
  const champion = service.models.active(challenger.name);
  if (champion.id === challenger.id)
    throw new PathotypeError(
      'ERR_VALIDATION',
      `${challenger.id} is the active version already: nothing to compare it with`,
    );
  if (champion.predictor.manifest.classes.join() !== challenger.predictor.manifest.classes.join())
    throw new PathotypeError(
      'ERR_VALIDATION',
      `${challenger.id} knows the classes ${challenger.predictor.manifest.classes.join(', ')}, ${champion.id} ${champion.predictor.manifest.classes.join(', ')}: they cannot be compared case by case`,
    );
  const excluded = { trainedOn: 0, imageNotKept: 0, unsettled: 0, notAClass: 0 };
  const cases = await eligibleCases(service, [champion, challenger], excluded);
  const answers = async (model: ServedModel) => {
    const out = [];
    for (const c of cases) {
      const answer =
        c.recordModel === model.id
          ? { predicted: c.recordPredicted }
          : await answerOf(service, model, c.caseId, c.file);
      out.push({
        fileName: c.caseId,
        caseId: c.group,
        className: c.label,
        predicted: 'predicted' in answer ? answer.predicted : '',
      });
    }
    return out;
  };
  const a = { name: challenger.id, images: await answers(challenger) };
  const b = { name: champion.id, images: await answers(champion) };
  const paired = cases.length > 0 ? compareCrossValidations(a, b) : null;
  const result: ComparisonResult = {
    cases: cases.length,
    patients: new Set(cases.map((c) => c.group)).size,
    excluded,
    trainingSetUnknown: [champion, challenger].filter((m) => trainingSetOf(m) === null).map((m) => m.id),
    championAccuracy: paired?.b.accuracy ?? null,
    challengerAccuracy: paired?.a.accuracy ?? null,
    difference: paired?.difference ?? null,
    onlyChampion: paired?.onlyB ?? 0,
    onlyChallenger: paired?.onlyA ?? 0,
  };
  return service.store.models.addComparison({
    name: challenger.name,
    champion: champion.id,
    challenger: challenger.id,
    actor,
    result,
  });
}

/**
 * Makes a version of a name active. A version never active before needs a comparison with the
 * version active now (the admin has seen how it does on reviewed cases); going back to a version
 * that was active before (a rollback) needs none.
 */
export async function promote(
  service: PredictionService,
  target: ServedModel,
  actor: string,
): Promise<Promotion> {
  await service.models.refresh();
  const current = service.models.active(target.name);
  if (current.id === target.id)
    throw new PathotypeError('ERR_VALIDATION', `${target.id} is the active version already`);
  const history = await service.store.models.history(target.name);
  const wasActive = history.some((p) => p.modelId === target.id);
  const [comparison] = (
    await service.store.models.comparisons<ComparisonResult>(target.name, target.id)
  ).filter((c) => c.champion === current.id);
  if (!wasActive && !comparison)
    throw new PathotypeError(
      'ERR_NOT_COMPARED',
      `compare ${target.id} with the active ${current.id} on the reviewed cases first (POST /api/v1/models/${target.name}/compare)`,
    );
  const promotion = await service.store.models.promote({
    name: target.name,
    modelId: target.id,
    previous: current.id,
    actor,
    comparisonId: wasActive ? null : (comparison?.id ?? null),
  });
  await service.models.refresh();
  return promotion;
}
