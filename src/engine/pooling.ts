/**
 * Pooling, in one place: three ways many things become one, each with its own name.
 * - Spatial pooling (`SpatialPooling`, a zoo head's `head.pooling`): how a network's feature map
 *   becomes one vector per patch: flattened (KNIME's VGG16 top) or averaged.
 * - Bag pooling (`BagPooling`, a multiple-instance head's `mil.pooling`): how the instances of a
 *   bag (an image's or a slide's patch features) become one vector, inside the head. Each is
 *   described once in BAG_POOLING: its layer, the vote rule a package with it answers by, whether
 *   its instances have attention scores, and how the ONNX sidecar states it.
 * - The vote rule (`VoteRule`, a package's `vote`): how patch outputs become an image's (or a
 *   slide's) answer, outside the network (predict/vote.ts carries it out).
 * The JSON keys stay `head.pooling`, `mil.pooling` and `vote`, as configs and packages write them.
 */
import type { LayerSpec, NetworkSpec } from './spec.js';

/** Each spatial pooling's layer. */
export const SPATIAL_POOLING = {
  flatten: { type: 'flatten' },
  avg: { type: 'globalAvgPool' },
} as const satisfies Record<string, LayerSpec>;
export type SpatialPooling = keyof typeof SPATIAL_POOLING;
export const SPATIAL_POOLINGS = Object.keys(SPATIAL_POOLING) as SpatialPooling[];

/**
 * How a package turns its patches' outputs into the image's class: the majority of patch
 * classes, the highest mean probability, the highest mean log-probability, or (a multiple-instance
 * head with attention pooling) the log-probabilities weighted by attention.
 */
export const VOTE_RULES = ['majority', 'mean', 'logit', 'attention'] as const;
export type VoteRule = (typeof VOTE_RULES)[number];

/** What each vote rule needs of every patch besides its probabilities. */
export const VOTE_RULE_NEEDS: Record<VoteRule, { logProbabilities: boolean; attention: boolean }> = {
  majority: { logProbabilities: false, attention: false },
  mean: { logProbabilities: false, attention: false },
  // Averages log-probabilities, so it needs them exact (from the logits).
  logit: { logProbabilities: true, attention: false },
  attention: { logProbabilities: true, attention: true },
};

/** The attention pool's layer name: its weights are `mil_attention_V`, `_U` and `_w`. */
export const ATTENTION_LAYER = 'mil_attention';

export interface BagPoolingDescriptor {
  /** The head's layer that pools a bag's instances into one vector (`units`: an attention's hidden size). */
  layer: (units: number) => LayerSpec;
  /**
   * The vote rule of a package with this head: its answer is the head's pooled bag, which the
   * rule reproduces from each patch run as a bag of one.
   */
  vote: VoteRule;
  /** Whether each instance gets an attention score (a weight in the answer, shown as a heatmap, an ONNX output). */
  attention: boolean;
  /** How the ONNX sidecar states the pooling of the graph's per-patch logits into an image's. */
  sidecar: string;
}

const BAG_POOLING_ROWS = {
  // Gated attention (Ilse et al. 2018).
  attention: {
    layer: (units) => ({ type: 'attentionPool', name: ATTENTION_LAYER, units, gated: true }),
    vote: 'attention',
    attention: true,
    sidecar:
      "image logits = sum over the image's patches of softmax(attention) x logits (each patch's logits from this graph)",
  },
  mean: {
    layer: () => ({ type: 'globalAvgPool' }),
    vote: 'logit',
    attention: false,
    sidecar: "image logits = the mean of the image's patches' logits",
  },
} as const satisfies Record<string, BagPoolingDescriptor>;

export type BagPooling = keyof typeof BAG_POOLING_ROWS;
export const BAG_POOLING: Readonly<Record<BagPooling, BagPoolingDescriptor>> = BAG_POOLING_ROWS;
export const BAG_POOLINGS = Object.keys(BAG_POOLING) as BagPooling[];

/** The bag pooling of a multiple-instance head's spec: the one whose layer it holds. */
export function bagPoolingOf(spec: NetworkSpec): BagPooling | undefined {
  return BAG_POOLINGS.find((p) => spec.layers.some((l) => l.type === BAG_POOLING[p].layer(1).type));
}
