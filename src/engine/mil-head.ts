/**
 * The multiple-instance head: a network over a bag of patch features (one image's or one slide's)
 * that answers for the whole bag. Each instance is projected (1x1 convolution, ReLU, dropout),
 * the bag is pooled by gated attention (Ilse et al. 2018) or by the plain mean, and one linear
 * layer gives the logits. The classifier is linear after the pooling and the attention weights
 * sum to 1, so the bag's logits are exactly the attention-weighted mean of the logits of its
 * instances, each run as a bag of one: that is how an instance gets its class and its weight in
 * a heatmap, and why a slide's tiles can be scored one region at a time and pooled at the end.
 */
import { EngineInputError } from '../errors.js';
import { bagInput, type LayerSpec, type NetworkSpec } from './spec.js';
import { CLASSIFIER_LAYER } from './zoo.js';

export const MIL_POOLINGS = ['attention', 'mean'] as const;
export type MilPooling = (typeof MIL_POOLINGS)[number];

/** The attention pool's layer name: its weights are `mil_attention_V`, `_U` and `_w`. */
export const ATTENTION_LAYER = 'mil_attention';
export const PROJECTION_LAYER = 'mil_project';

export interface MilHeadOptions {
  features: number;
  classes: number;
  pooling: MilPooling;
  /** Width of each instance after projection. */
  projection: number;
  /** Hidden size of the attention. */
  attention: number;
  dropout: number;
  /** Per-feature standardisation of the instances, from the training bags. */
  mean?: readonly number[];
  std?: readonly number[];
}

export function milHeadSpec(options: MilHeadOptions): NetworkSpec {
  const { features, classes, pooling } = options;
  if (!MIL_POOLINGS.includes(pooling))
    throw new EngineInputError(`unknown pooling '${pooling as string}' (${MIL_POOLINGS.join(', ')})`);
  const input = bagInput(features);
  const layers: LayerSpec[] = [
    { type: 'conv2d', name: PROJECTION_LAYER, filters: options.projection, kernelSize: 1, padding: 'valid' },
    { type: 'relu' },
  ];
  if (options.dropout > 0) layers.push({ type: 'dropout', rate: options.dropout });
  layers.push(
    pooling === 'attention'
      ? { type: 'attentionPool', name: ATTENTION_LAYER, units: options.attention, gated: true }
      : { type: 'globalAvgPool' },
  );
  layers.push({ type: 'linear', name: CLASSIFIER_LAYER, units: classes });
  return {
    name: `mil_${pooling}`,
    input: {
      ...input,
      ...(options.mean ? { mean: [...options.mean] } : {}),
      ...(options.std ? { std: [...options.std] } : {}),
    },
    classes,
    layers,
  };
}

/** Whether a head pools by attention (its instances then have scores to show). */
export function hasAttention(spec: NetworkSpec): boolean {
  return spec.layers.some((l) => l.type === 'attentionPool');
}
