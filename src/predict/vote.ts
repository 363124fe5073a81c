/**
 * From patch probabilities to an image's class: the majority vote of the patches' predicted
 * classes (KNIME's rule), or the class of highest mean probability. Ties in a vote go to the
 * class with the higher mean probability.
 */
export type VoteRule = 'majority' | 'mean';

export interface ImageVote {
  predicted: number;
  byMajority: number;
  byMean: number;
  voteShares: number[];
  meanProbabilities: number[];
  /** Per patch: predicted class and its probability. */
  patchClasses: Int32Array;
  patchConfidence: Float32Array;
}

export function argmax(values: ArrayLike<number>, start = 0, length = values.length): number {
  let best = 0;
  for (let i = 1; i < length; i++) if ((values[start + i] ?? 0) > (values[start + best] ?? 0)) best = i;
  return best;
}

/** `probabilities` holds `count` rows of `classes` values. */
export function vote(
  probabilities: Float32Array,
  count: number,
  classes: number,
  rule: VoteRule = 'majority',
): ImageVote {
  const votes = new Array<number>(classes).fill(0);
  const sums = new Array<number>(classes).fill(0);
  const patchClasses = new Int32Array(count);
  const patchConfidence = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const c = argmax(probabilities, i * classes, classes);
    patchClasses[i] = c;
    patchConfidence[i] = probabilities[i * classes + c] ?? 0;
    votes[c] = (votes[c] ?? 0) + 1;
    for (let k = 0; k < classes; k++) sums[k] = (sums[k] ?? 0) + (probabilities[i * classes + k] ?? 0);
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
  return {
    predicted: rule === 'majority' ? byMajority : byMean,
    byMajority,
    byMean,
    voteShares,
    meanProbabilities,
    patchClasses,
    patchConfidence,
  };
}
