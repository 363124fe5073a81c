/**
 * From patch probabilities to an image's class: the majority vote of the patches' predicted
 * classes (KNIME's rule), the class of highest mean probability, or the class of highest mean
 * log-probability ('logit': for a linear head on pooled features, softmax of the mean patch
 * log-probability is exactly the head applied to the image's mean feature vector), or the
 * attention-weighted mean log-probability ('attention': for a multiple-instance head, exactly
 * the head applied to the attention-pooled bag, engine/mil-head.ts). Ties in a vote go to the
 * class with the higher mean probability.
 */
import { VOTE_RULE_NEEDS, type VoteRule } from '../engine/pooling.js';

export interface ImageVote {
  predicted: number;
  byMajority: number;
  byMean: number;
  voteShares: number[];
  meanProbabilities: number[];
  /** Per patch: predicted class and its probability. */
  patchClasses: Int32Array;
  patchConfidence: Float32Array;
  /**
   * The image's class probabilities under the rule (vote shares, mean probabilities, or the
   * softmax of the mean log-probabilities), before any calibration.
   */
  imageProbabilities: number[];
  /** Their logarithms, centred: the scores that temperature scaling divides. */
  imageScores: number[];
  /** Per patch under the 'attention' rule: its weight in the image's answer (they sum to 1). */
  attention?: Float32Array;
}

const LOG_FLOOR = 1e-7;

export function argmax(values: ArrayLike<number>, start = 0, length = values.length): number {
  let best = 0;
  for (let i = 1; i < length; i++) if ((values[start + i] ?? 0) > (values[start + best] ?? 0)) best = i;
  return best;
}

/**
 * `probabilities` holds `count` rows of `classes` values; `logProbabilities`, when given, their
 * exact logarithms (from the logits), which the 'logit' rule averages and the 'attention' rule
 * weights by the softmax of the patches' `attention` scores.
 */
export function vote(
  probabilities: Float32Array,
  count: number,
  classes: number,
  rule: VoteRule = 'majority',
  logProbabilities?: Float32Array,
  attention?: Float32Array,
): ImageVote {
  const needsAttention = VOTE_RULE_NEEDS[rule].attention;
  if (needsAttention && (!attention || attention.length !== count))
    throw new RangeError(`the '${rule}' rule needs an attention score for every patch`);
  // Each patch's weight in the answer: the softmax of the attention scores over the image.
  const weights = needsAttention && attention ? Float32Array.from(softmax(Array.from(attention))) : undefined;
  const weightedLog = new Array<number>(classes).fill(0);
  const votes = new Array<number>(classes).fill(0);
  const sums = new Array<number>(classes).fill(0);
  const logSums = new Array<number>(classes).fill(0);
  const patchClasses = new Int32Array(count);
  const patchConfidence = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const c = argmax(probabilities, i * classes, classes);
    patchClasses[i] = c;
    patchConfidence[i] = probabilities[i * classes + c] ?? 0;
    votes[c] = (votes[c] ?? 0) + 1;
    for (let k = 0; k < classes; k++) {
      const p = probabilities[i * classes + k] ?? 0;
      sums[k] = (sums[k] ?? 0) + p;
      const logP = logProbabilities
        ? (logProbabilities[i * classes + k] ?? 0)
        : Math.log(Math.max(p, LOG_FLOOR));
      logSums[k] = (logSums[k] ?? 0) + logP;
      if (weights) weightedLog[k] = (weightedLog[k] ?? 0) + (weights[i] ?? 0) * logP;
    }
  }
  const meanProbabilities = sums.map((s) => (count > 0 ? s / count : 0));
  const voteShares = votes.map((v) => (count > 0 ? v / count : 0));
  const byMean = argmax(meanProbabilities);
  const top = Math.max(...votes);
  const tied = votes.map((v, k) => (v === top ? k : -1)).filter((k) => k >= 0);
  const byMajority = tied.reduce(
    (best, k) => ((meanProbabilities[k] ?? 0) > (meanProbabilities[best] ?? 0) ? k : best),
    tied[0] ?? 0,
  );
  const meanLog = logSums.map((s) => (count > 0 ? s / count : 0));
  const byLogit = argmax(meanLog);
  let imageScores: number[];
  if (rule === 'logit') imageScores = meanLog;
  else if (rule === 'attention') imageScores = weightedLog;
  else
    imageScores = (rule === 'majority' ? voteShares : meanProbabilities).map((p) =>
      Math.log(Math.max(p, LOG_FLOOR)),
    );
  const centre = imageScores.reduce((a, b) => a + b, 0) / Math.max(1, classes);
  imageScores = imageScores.map((s) => s - centre);
  return {
    predicted:
      rule === 'majority'
        ? byMajority
        : rule === 'mean'
          ? byMean
          : rule === 'logit'
            ? byLogit
            : argmax(weightedLog),
    byMajority,
    byMean,
    voteShares,
    meanProbabilities,
    patchClasses,
    patchConfidence,
    imageProbabilities: softmax(imageScores),
    imageScores,
    ...(weights ? { attention: weights } : {}),
  };
}

/** Softmax of scores divided by a temperature (above 1 softens, below 1 sharpens). */
export function softmax(scores: readonly number[], temperature = 1): number[] {
  const scaled = scores.map((s) => s / temperature);
  const max = Math.max(...scaled);
  const exps = scaled.map((s) => Math.exp(s - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e) => e / sum);
}

/** The image's result after calibration: probabilities, the top class's, and whether it answers. */
export interface Answer {
  predicted: number;
  confidence: number;
  probabilities: number[];
  status: 'answered' | 'uncertain';
}

export function answer(
  scores: readonly number[],
  calibration?: { temperature: number; threshold: number },
): Answer {
  const probabilities = softmax(scores, calibration?.temperature ?? 1);
  const predicted = argmax(probabilities);
  const confidence = probabilities[predicted] ?? 0;
  const status = calibration && confidence < calibration.threshold ? 'uncertain' : 'answered';
  return { predicted, confidence, probabilities, status };
}
