/**
 * What the network says about each patch: softmax probabilities, plus the log-probabilities
 * when the vote needs them. The 'logit' vote averages log-probabilities; taken from the logits
 * (logit minus log-sum-exp) they are exact however confident a patch is, where logs of rounded
 * probabilities would not be.
 */
import { ConfigError } from '../errors.js';
import type { PatchRunner } from '../engine/inference-engine.js';
import { VOTE_RULE_NEEDS, type VoteRule } from '../engine/pooling.js';

/** The addon's network or an ONNX Runtime session over the same weights (engine/inference-engine.ts). */
export type PatchModel = Pick<PatchRunner, 'classes' | 'predict' | 'instances' | 'featureDims'>;

export interface PatchOutputs {
  probabilities: Float32Array;
  logProbabilities?: Float32Array;
  /** Per patch, a multiple-instance head's attention score (before the softmax over its image or slide). */
  attention?: Float32Array;
  /** Per patch, the features the class scores came from (`featureDims` each), when the runner gives them. */
  features?: Float32Array;
}

/** Per group of patches (an image among those sharing batches), the sum of their features. */
export interface FeatureSums {
  sums: Float64Array;
  dims: number;
}

export async function patchOutputs(
  network: PatchModel,
  patches: Uint8Array,
  options: { bf16: boolean; rule: VoteRule },
): Promise<PatchOutputs> {
  const needs = VOTE_RULE_NEEDS[options.rule];
  // A runner with instance outputs gives logits and features in one pass, whatever the rule.
  if (!needs.logProbabilities && !network.instances)
    return { probabilities: await network.predict(patches, { bf16: options.bf16 }) };
  const { logits, attention, features } = network.instances
    ? await network.instances(patches, { bf16: options.bf16 })
    : { logits: await network.predict(patches, { bf16: options.bf16, raw: true }), attention: null };
  if (needs.attention && !attention)
    throw new ConfigError("the 'attention' vote needs a model that pools by attention (method: mil)");
  return {
    ...fromLogits(logits, network.classes),
    ...(attention ? { attention } : {}),
    ...(features ? { features } : {}),
  };
}

function fromLogits(
  logits: Float32Array,
  classes: number,
): Required<Pick<PatchOutputs, 'probabilities' | 'logProbabilities'>> {
  const logProbabilities = new Float32Array(logits.length);
  const probabilities = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / classes; r++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c] ?? 0);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp((logits[r * classes + c] ?? 0) - max);
    const logNorm = max + Math.log(sum);
    for (let c = 0; c < classes; c++) {
      const logP = (logits[r * classes + c] ?? 0) - logNorm;
      logProbabilities[r * classes + c] = logP;
      probabilities[r * classes + c] = Math.exp(logP);
    }
  }
  return { probabilities, logProbabilities };
}

/**
 * The outputs of `count` patches, read batch by batch with `read(start, end)` (uint8 HWC back to
 * back): one loop for the predictor's freshly cut patches and a store's saved ones. With
 * `groups` (each patch's group index), the features of each group's patches are summed.
 */
export async function batchedPatchOutputs(
  network: PatchModel,
  count: number,
  batchSize: number,
  read: (start: number, end: number) => Promise<Uint8Array> | Uint8Array,
  options: { bf16: boolean; rule: VoteRule; groups?: Int32Array },
): Promise<PatchOutputs & { featureSums?: FeatureSums }> {
  const classes = network.classes;
  const probabilities = new Float32Array(count * classes);
  const logProbabilities = VOTE_RULE_NEEDS[options.rule].logProbabilities
    ? new Float32Array(count * classes)
    : undefined;
  let attention: Float32Array | undefined;
  const dims = network.featureDims ?? 0;
  const groups = options.groups;
  const featureSums =
    groups && dims > 0
      ? { sums: new Float64Array((groups.reduce((m, g) => Math.max(m, g), -1) + 1) * dims), dims }
      : undefined;
  for (let start = 0; start < count; start += batchSize) {
    const end = Math.min(count, start + batchSize);
    const outputs = await patchOutputs(network, await read(start, end), options);
    if (featureSums && groups && outputs.features) addFeatures(featureSums, outputs.features, groups, start);
    probabilities.set(outputs.probabilities, start * classes);
    if (logProbabilities && outputs.logProbabilities)
      logProbabilities.set(outputs.logProbabilities, start * classes);
    if (outputs.attention) (attention ??= new Float32Array(count)).set(outputs.attention, start);
  }
  return {
    probabilities,
    ...(logProbabilities ? { logProbabilities } : {}),
    ...(attention ? { attention } : {}),
    ...(featureSums ? { featureSums } : {}),
  };
}

function addFeatures(target: FeatureSums, features: Float32Array, groups: Int32Array, first: number): void {
  const { sums, dims } = target;
  for (let i = 0; i < features.length / dims; i++) {
    const at = (groups[first + i] ?? 0) * dims;
    for (let d = 0; d < dims; d++) sums[at + d] = (sums[at + d] ?? 0) + (features[i * dims + d] ?? 0);
  }
}
