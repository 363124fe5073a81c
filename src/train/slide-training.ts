/**
 * Learning from whole slides: the frozen-base recipes (`method: probe` and `method: mil`) over
 * each slide's cached tile features (slide-bags.ts). A bag is a slide's usable tiles, or with
 * `aggregation: patient` a patient's slides pooled into one bag, as Slideflow's
 * `aggregation_level='patient'` does; every bag has its slide's (or patient's) one label.
 * Training is class-balanced and sees at most `maxTilesPerBag` tiles of a bag at a time (drawn at
 * random, Slideflow's bag size); answering takes the whole bag, as the package does on a slide.
 *
 * The head's answer on a bag is what the package answers on the slide: the probe's head is the
 * package network's classifier, so the 'logit' vote over the slide's tiles is the head on the
 * bag's mean features; the MIL head is the package's, and its vote rule reproduces its pooled bag.
 */
import { PathotypeError } from '../errors.js';
import type { Network } from '../engine/network.js';
import { BAG_POOLING, type VoteRule } from '../engine/pooling.js';
import { argmax, softmax } from '../predict/vote.js';
import { seededRandom } from '../random.js';
import {
  milPackageHead,
  probePackageHead,
  writeFrozenBasePackage,
  type FittedHead,
  type FrozenBase,
  type FrozenBaseRecipe,
  type FrozenBaseRun,
} from './frozen-base.js';
import { linearScores, type LinearModel } from './logistic.js';
import { sampleInstances, trainMilHead, type LabelledBag } from './mil.js';
import { fitLinearHead, meanOf } from './probe.js';
import type { Aggregation } from './config.js';
import type { TrainResult } from './run.js';
import type { SlideBag } from './slide-bags.js';

/** A bag of tiles with one label: a slide's, or a patient's slides' pooled. */
export interface TileBag extends LabelledBag {
  /** The slide's path, or the patient's id. */
  key: string;
  patient: string;
  slides: readonly SlideBag[];
}

/** The bags of `slides`: one per slide, or one per patient (its slides' tiles back to back). */
export function tileBags(
  slides: readonly SlideBag[],
  by: Aggregation,
  classes: readonly string[],
): TileBag[] {
  const groups = new Map<string, SlideBag[]>();
  for (const bag of slides) {
    const key = by === 'patient' ? bag.slide.patient : bag.slide.path;
    groups.set(key, [...(groups.get(key) ?? []), bag]);
  }
  return [...groups].map(([key, members]) => {
    const first = members[0] as SlideBag;
    const label = classes.indexOf(first.slide.label);
    if (label < 0)
      throw new PathotypeError(
        'ERR_TRAIN',
        `slide ${first.slide.path} is labelled ${first.slide.label}, not one of ${classes.join(', ')}`,
      );
    const count = members.reduce((n, m) => n + m.count, 0);
    const features = members.length === 1 ? first.features : new Float32Array(count * first.dims);
    if (members.length > 1) {
      let at = 0;
      for (const m of members) {
        features.set(m.features, at);
        at += m.features.length;
      }
    }
    return { key, patient: first.slide.patient, label, slides: members, features, count };
  });
}

/** Each tile's class under the head, its probabilities, and (an attention head) its weight in the bag's answer. */
export interface TileOutputs {
  predicted: Int32Array;
  /** count x classes. */
  probabilities: Float32Array;
  attention: Float32Array | null;
}

/** A head fitted on tile bags: what it answers on a bag, and the package it makes with its base. */
export interface SlideHead {
  /** The bag's class scores as the package answers its slide: the head's logits on the whole bag, centred. */
  scores(bag: Pick<LabelledBag, 'features' | 'count'>): Promise<number[]>;
  tiles(bag: Pick<LabelledBag, 'features' | 'count'>): Promise<TileOutputs>;
  trainingAccuracy: number;
  package(base: FrozenBase, training: Record<string, unknown>): FittedHead;
}

const centred = (scores: ArrayLike<number>): number[] => {
  const values = Array.from(scores);
  const mean = values.reduce((a, b) => a + b, 0) / Math.max(1, values.length);
  return values.map((v) => v - mean);
};

/** Each row's class (argmax) and probabilities (softmax) from rows of logits. */
function tileClasses(
  logits: ArrayLike<number>,
  count: number,
  classes: number,
): Omit<TileOutputs, 'attention'> {
  const predicted = new Int32Array(count);
  const probabilities = new Float32Array(count * classes);
  for (let i = 0; i < count; i++) {
    const row = softmax(Array.from({ length: classes }, (_, c) => logits[i * classes + c] ?? 0));
    probabilities.set(row, i * classes);
    predicted[i] = argmax(row);
  }
  return { predicted, probabilities };
}

type SlideHeadFitter = (
  config: FrozenBaseRecipe,
  bags: readonly TileBag[],
  dims: number,
  classes: number,
) => Promise<SlideHead>;

/**
 * The probe on bags: each bag one row, the mean of at most `maxTilesPerBag` of its tiles (drawn
 * once, seeded), the logistic head fitted class-balanced; a bag answers by its whole mean.
 */
const fitSlideProbe: SlideHeadFitter = (config, bags, dims, classes) => {
  const random = seededRandom(config.seed * 7919 + 3);
  const cap = config.slides.maxTilesPerBag;
  const x = new Float64Array(bags.length * dims);
  bags.forEach((bag, i) => {
    const tiles = sampleInstances(bag, dims, cap, random);
    x.set(meanOf(tiles, tiles.length / dims, dims), i * dims);
  });
  const fitted = fitLinearHead(
    x,
    Int32Array.from(bags, (b) => b.label),
    classes,
    config.probe.l2,
  );
  const model: LinearModel = fitted.model;
  return Promise.resolve({
    scores: (bag) => Promise.resolve(centred(linearScores(model, meanOf(bag.features, bag.count, dims)))),
    tiles: (bag) =>
      Promise.resolve({
        ...tileClasses(linearScores(model, bag.features), bag.count, classes),
        attention: null,
      }),
    trainingAccuracy: fitted.trainingAccuracy,
    // The 'logit' vote over a slide's tiles is this head on the slide's mean features, whatever the recipe's vote.
    package: (base, training) => ({
      ...probePackageHead(base, fitted.head, training),
      vote: slideVoteRule(config),
    }),
  });
};

/** The multiple-instance head on bags, at most `maxTilesPerBag` tiles of a bag each step. */
const fitSlideMil: SlideHeadFitter = async (config, bags, dims, classes) => {
  const head = await trainMilHead(bags, dims, classes, {
    mil: config.mil,
    seed: config.seed,
    maxInstances: config.slides.maxTilesPerBag,
  });
  const network: Network = head.network;
  const attention = BAG_POOLING[config.mil.pooling].attention;
  return {
    scores: async (bag) => centred(await network.predict(bag.features, { raw: true })),
    tiles: async (bag) => {
      const perTile = tileClasses(
        await network.predict(bag.features, { raw: true, bagSize: 1 }),
        bag.count,
        classes,
      );
      if (!attention) return { ...perTile, attention: null };
      const scores = (await network.predictWithAttention(bag.features, { raw: true })).attention;
      return { ...perTile, attention: Float32Array.from(softmax(Array.from(scores))) };
    },
    trainingAccuracy: head.trainingAccuracy,
    package: (base, training) => milPackageHead(base, config.mil.pooling, head, training),
  };
};

/** The vote rule a slide-trained package answers by: the one that reproduces its head on the slide's whole bag. */
export function slideVoteRule(config: FrozenBaseRecipe): VoteRule {
  return config.method === 'mil' ? BAG_POOLING[config.mil.pooling].vote : 'logit';
}

const SLIDE_HEAD_FITTERS: Record<FrozenBaseRecipe['method'], SlideHeadFitter> = {
  probe: fitSlideProbe,
  mil: fitSlideMil,
};

/** The recipe's head fitted on tile bags (class-balanced, at most `maxTilesPerBag` tiles of a bag at a time). */
export async function fitSlideHead(
  config: FrozenBaseRecipe,
  bags: readonly TileBag[],
  dims: number,
  classes: number,
): Promise<SlideHead> {
  if (bags.length === 0) throw new PathotypeError('ERR_TRAIN', 'no slide bag to learn from');
  return SLIDE_HEAD_FITTERS[config.method](config, bags, dims, classes);
}

/** The package to deploy: the head fitted on every bag, with its base, written as any frozen-base package. */
export async function trainSlidePackage(
  run: FrozenBaseRun & { config: FrozenBaseRecipe },
  bags: readonly TileBag[],
  classes: number,
): Promise<TrainResult> {
  const head = await fitSlideHead(run.config, bags, run.base.features.dims, classes);
  return writeFrozenBasePackage(
    run,
    head.package(run.base, {
      bags: bags.length,
      tiles: bags.reduce((n, b) => n + b.count, 0),
      dims: run.base.features.dims,
      trainingAccuracy: head.trainingAccuracy,
      featureEngine: run.base.features.runner.engine,
    }),
  );
}
