/** What the data-parallel test and its worker processes share. */
import type { Network } from '../../src/engine/network.js';
import type { NetworkSpec } from '../../src/engine/spec.js';
import { buildSpec } from '../../src/engine/zoo.js';

export const DDP_STEPS = 3;

export function ddpSpec(): NetworkSpec {
  return buildSpec('small_cnn', { inputSize: 24, head: { classes: 3 } });
}

/** The trainable weights, flattened in a fixed order. */
export async function flatWeights(network: Network): Promise<number[]> {
  return (await network.exportTensors()).filter((t) => t.trainable).flatMap((t) => Array.from(t.data));
}
