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
import type { InstanceOutputs, PatchRunner } from './inference-engine.js';
import type { NamedTensor, Network } from './network.js';
import { BAG_POOLING, BAG_POOLINGS, bagPoolingOf, type BagPooling } from './pooling.js';
import { bagInput, type LayerSpec, type NetworkSpec } from './spec.js';
import { CLASSIFIER_LAYER } from './zoo.js';

export const PROJECTION_LAYER = 'mil_project';

export interface MilHeadOptions {
  features: number;
  classes: number;
  pooling: BagPooling;
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
  if (!BAG_POOLINGS.includes(pooling))
    throw new EngineInputError(`unknown pooling '${pooling as string}' (${BAG_POOLINGS.join(', ')})`);
  const input = bagInput(features);
  const layers: LayerSpec[] = [
    { type: 'conv2d', name: PROJECTION_LAYER, filters: options.projection, kernelSize: 1, padding: 'valid' },
    { type: 'relu' },
  ];
  if (options.dropout > 0) layers.push({ type: 'dropout', rate: options.dropout });
  layers.push(BAG_POOLING[pooling].layer(options.attention));
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

/**
 * Patches through a feature runner, then each patch's features through the head as a bag of one:
 * its class probabilities (or logits), and with `instances` its attention score too. The head is
 * a few hundred thousand weights, so it always runs in fp32 in the addon.
 */
export function milRunner(
  features: PatchRunner,
  head: Network,
): PatchRunner & Required<Pick<PatchRunner, 'instances'>> {
  const pooling = bagPoolingOf(head.spec);
  const attention = pooling ? BAG_POOLING[pooling].attention : false;
  const featuresOf = (batch: Uint8Array, bf16: boolean | undefined): Promise<Float32Array> =>
    features.predict(batch, { ...(bf16 === undefined ? {} : { bf16 }), raw: true });
  return {
    engine: features.engine,
    classes: head.spec.classes,
    imageBytes: features.imageBytes,
    featureDims: features.classes,
    predict: async (batch, options = {}) =>
      head.predict(await featuresOf(batch, options.bf16), { raw: options.raw ?? false, bagSize: 1 }),
    instances: async (batch, options = {}): Promise<InstanceOutputs> => {
      const x = await featuresOf(batch, options.bf16);
      if (!attention)
        return { logits: await head.predict(x, { raw: true, bagSize: 1 }), attention: null, features: x };
      const { values, attention: scores } = await head.predictWithAttention(x, { raw: true, bagSize: 1 });
      return { logits: values, attention: scores, features: x };
    },
    close: () => features.close(),
  };
}

/**
 * The per-patch network a multiple-instance package exports (to ONNX): the base, then the head
 * run on each patch as a bag of one, its input standardisation folded into the projection (now a
 * linear layer on the flat features), the bag pooling dropped (the identity for one instance)
 * unless it has attention, whose pool is kept for its score. Only the ONNX writer reads this spec:
 * the addon's attention pool takes bags, not flat vectors.
 */
export function perPatchExport(
  base: NetworkSpec,
  baseTensors: readonly NamedTensor[],
  head: NetworkSpec,
  headTensors: readonly NamedTensor[],
): { spec: NetworkSpec; tensors: NamedTensor[] } {
  const find = (name: string): NamedTensor => {
    const tensor = headTensors.find((t) => t.name === name);
    if (!tensor) throw new EngineInputError(`the multiple-instance head lacks '${name}'`);
    return tensor;
  };
  const weight = find(`${PROJECTION_LAYER}.weight`);
  const bias = find(`${PROJECTION_LAYER}.bias`);
  const [units = 0, features = 0] = weight.shape;
  const { mean, std } = head.input;
  // W ((x - m) / s) + b = (W / s) x + (b - W (m / s)).
  const folded = new Float32Array(units * features);
  const shifted = Float32Array.from(bias.data);
  for (let u = 0; u < units; u++)
    for (let d = 0; d < features; d++) {
      const w = (weight.data[u * features + d] ?? 0) / (std[d] ?? 1);
      folded[u * features + d] = w;
      shifted[u] = (shifted[u] ?? 0) - w * (mean[d] ?? 0);
    }
  const pooling = bagPoolingOf(head);
  const dropped = pooling && !BAG_POOLING[pooling].attention ? BAG_POOLING[pooling].layer(1).type : undefined;
  const layers = head.layers.flatMap((layer): LayerSpec[] => {
    if (layer.type === 'conv2d' && layer.name === PROJECTION_LAYER)
      return [{ type: 'linear', name: PROJECTION_LAYER, units }];
    return layer.type === dropped || layer.type === 'dropout' ? [] : [layer];
  });
  return {
    spec: {
      ...base,
      name: `${base.name}_${head.name}`,
      classes: head.classes,
      layers: [...base.layers, ...layers],
    },
    tensors: [
      ...baseTensors,
      ...headTensors.filter((t) => !t.name.startsWith(`${PROJECTION_LAYER}.`)),
      { name: `${PROJECTION_LAYER}.weight`, shape: [units, features], data: folded },
      { name: `${PROJECTION_LAYER}.bias`, shape: [units], data: shifted },
    ],
  };
}
