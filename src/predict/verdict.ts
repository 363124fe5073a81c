/**
 * The verdict on one image or slide: its patches' vote and the model's calibration turned into
 * what a pathologist reads (answered or uncertain, the class, its calibrated confidence, the
 * vote shares). Written once here; the predictor, the slide predictor, evaluate, the REST API's
 * schema, the CLI's formats and the reports all take their fields from it.
 */
import { VOTE_RULES, type VoteRule } from '../engine/pooling.js';
import type { Calibration } from '../model/package.js';
import { answer, type ImageVote } from './vote.js';

/** Decimals every verdict number is given with. */
export const VERDICT_DECIMALS = 4;

// A type, not an interface: the API's response schema types take it as an open record.
export type Verdict = {
  /** 'answered': `predicted` is the model's answer; 'uncertain': below the model's threshold, refer to a pathologist. */
  status: 'answered' | 'uncertain';
  /** The most likely class under the model's rule (also when uncertain). */
  predicted: string;
  /** Calibrated probability of `predicted`. */
  confidence: number;
  /** Calibrated class probabilities under the rule. */
  probabilities: Record<string, number>;
  /** The confidence needed to answer; null when the model carries no calibration. */
  threshold: number | null;
  rule: VoteRule;
  byMajority: string;
  byMean: string;
  /** Share of the patches voting for each class. */
  voteShares: Record<string, number>;
  meanProbabilities: Record<string, number>;
  patches: number;
};

const NUMBER_MAP = { type: 'object', additionalProperties: { type: 'number' } } as const;

/** The verdict's JSON schema, for the routes that show one. */
export const VERDICT_PROPERTIES = {
  status: {
    enum: ['answered', 'uncertain'],
    description: "'uncertain': below the model's calibrated threshold; refer to a pathologist",
  },
  predicted: { type: 'string', description: 'the most likely subtype (also when uncertain)' },
  confidence: { type: 'number', description: 'calibrated probability of the predicted subtype' },
  probabilities: NUMBER_MAP,
  threshold: {
    type: ['number', 'null'],
    description: 'above 1: the model answers nothing (no image, no slide)',
  },
  rule: { enum: VOTE_RULES },
  byMajority: { type: 'string' },
  byMean: { type: 'string' },
  voteShares: NUMBER_MAP,
  meanProbabilities: NUMBER_MAP,
  patches: { type: 'integer' },
} as const satisfies Record<keyof Verdict, unknown>;

export function rounded(value: number): number {
  return Number(value.toFixed(VERDICT_DECIMALS));
}

/** An attention weight as shown: significant digits, not decimals (a slide's tiles may each weigh 1e-5). */
export function roundedWeight(value: number): number {
  return Number(value.toPrecision(VERDICT_DECIMALS));
}

function named(classes: readonly string[], values: readonly number[]): Record<string, number> {
  return Object.fromEntries(classes.map((c, k) => [c, rounded(values[k] ?? 0)]));
}

export function verdictOf(
  vote: ImageVote,
  classes: readonly string[],
  rule: VoteRule,
  calibration: Calibration | undefined,
): Verdict {
  const result = answer(vote.imageScores, calibration);
  return {
    status: result.status,
    predicted: classes[vote.predicted] ?? '',
    confidence: rounded(result.confidence),
    probabilities: named(classes, result.probabilities),
    threshold: calibration?.threshold ?? null,
    rule,
    byMajority: classes[vote.byMajority] ?? '',
    byMean: classes[vote.byMean] ?? '',
    voteShares: named(classes, vote.voteShares),
    meanProbabilities: named(classes, vote.meanProbabilities),
    patches: vote.patchClasses.length,
  };
}

/** The verdict's columns in a table (the CLI's CSV): vote shares and mean patch probabilities per class. */
export function verdictColumns(classes: readonly string[]): string[] {
  return [
    'status',
    'confidence',
    'predicted',
    'by_majority',
    'by_mean',
    'patches',
    ...classes.map((c) => `votes_${c}`),
    ...classes.map((c) => `probability_${c}`),
  ];
}

export function verdictCells(verdict: Verdict, classes: readonly string[]): string[] {
  return [
    verdict.status,
    verdict.confidence.toFixed(VERDICT_DECIMALS),
    verdict.predicted,
    verdict.byMajority,
    verdict.byMean,
    String(verdict.patches),
    ...classes.map((c) => (verdict.voteShares[c] ?? 0).toFixed(VERDICT_DECIMALS)),
    ...classes.map((c) => (verdict.meanProbabilities[c] ?? 0).toFixed(VERDICT_DECIMALS)),
  ];
}
