/**
 * What the network says about each patch: softmax probabilities, plus the raw logits when the
 * vote needs them. The 'logit' vote averages log-probabilities; taken from the logits they are
 * exact however confident a patch is, where logs of rounded probabilities would not be.
 */
import type { Network } from '../engine/network.js';
import type { VoteRule } from './vote.js';

export interface PatchOutputs {
  probabilities: Float32Array;
  logits?: Float32Array;
}

export async function patchOutputs(
  network: Network,
  patches: Uint8Array,
  options: { bf16: boolean; rule: VoteRule },
): Promise<PatchOutputs> {
  if (options.rule !== 'logit')
    return { probabilities: await network.predict(patches, { bf16: options.bf16 }) };
  const logits = await network.predict(patches, { bf16: options.bf16, raw: true });
  const classes = network.spec.classes;
  const probabilities = new Float32Array(logits.length);
  for (let r = 0; r < logits.length / classes; r++) {
    let max = -Infinity;
    for (let c = 0; c < classes; c++) max = Math.max(max, logits[r * classes + c] ?? 0);
    let sum = 0;
    for (let c = 0; c < classes; c++) sum += Math.exp((logits[r * classes + c] ?? 0) - max);
    for (let c = 0; c < classes; c++)
      probabilities[r * classes + c] = Math.exp((logits[r * classes + c] ?? 0) - max) / sum;
  }
  return { probabilities, logits };
}
