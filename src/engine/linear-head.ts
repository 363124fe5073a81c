/**
 * A classifier's last layer run in TypeScript over the features of the network before it, so
 * that one pass through the network gives both: the class scores the vote needs and the features
 * an input's atypicality is measured on (predict/atypicality.ts). A linear layer over a few
 * hundred features costs microseconds per patch; the network before it is the whole cost.
 */
import type { InstanceOutputs, PatchRunner } from './inference-engine.js';
import type { NamedTensor } from './network.js';
import { outputShapeOf, type NetworkSpec } from './spec.js';
import { CLASSIFIER_LAYER, FEATURES_SUFFIX } from './zoo.js';

/** A linear head: [classes, dims] weights row by row, and a bias per class. */
export interface LinearHead {
  weight: Float32Array;
  bias: Float32Array;
  classes: number;
}

/** The classifier's weights among a network's tensors; undefined when it has none by that name. */
export function classifierHead(tensors: readonly NamedTensor[], classes: number): LinearHead | undefined {
  const find = (name: string): Float32Array | undefined =>
    tensors.find((t) => t.name === `${CLASSIFIER_LAYER}.${name}`)?.data;
  const weight = find('weight');
  const bias = find('bias');
  return weight && bias
    ? { weight: Float32Array.from(weight), bias: Float32Array.from(bias), classes }
    : undefined;
}

/**
 * The network before its classifier (hidden head layers kept, unlike a frozen base's
 * featureSpec), when it ends in the zoo's linear classifier over flat features; else undefined.
 */
export function beforeClassifier(spec: NetworkSpec): NetworkSpec | undefined {
  const last = spec.layers[spec.layers.length - 1];
  if (last?.type !== 'linear' || last.name !== CLASSIFIER_LAYER) return undefined;
  const body = { ...spec, name: `${spec.name}${FEATURES_SUFFIX}`, layers: spec.layers.slice(0, -1) };
  const shape = outputShapeOf(body);
  return shape.length === 1 ? { ...body, classes: shape[0] ?? 0 } : undefined;
}

function softmaxInPlace(row: Float32Array): void {
  const max = Math.max(...row);
  let sum = 0;
  for (let c = 0; c < row.length; c++) {
    row[c] = Math.exp((row[c] ?? 0) - max);
    sum += row[c] ?? 0;
  }
  for (let c = 0; c < row.length; c++) row[c] = (row[c] ?? 0) / sum;
}

function applyHead(head: LinearHead, features: Float32Array, dims: number): Float32Array {
  const n = features.length / dims;
  const out = new Float32Array(n * head.classes);
  for (let i = 0; i < n; i++) {
    for (let c = 0; c < head.classes; c++) {
      let sum = head.bias[c] ?? 0;
      for (let d = 0; d < dims; d++) sum += (head.weight[c * dims + d] ?? 0) * (features[i * dims + d] ?? 0);
      out[i * head.classes + c] = sum;
    }
  }
  return out;
}

/**
 * A feature runner (a network without its classifier, or an encoder) and a linear head as one
 * runner: softmax probabilities or logits, and with `instances` the logits and the features of
 * the same pass.
 */
export function linearHeadRunner(
  base: PatchRunner,
  head: LinearHead,
): PatchRunner & Required<Pick<PatchRunner, 'instances'>> {
  const dims = base.classes;
  const features = (batch: Uint8Array, bf16: boolean | undefined): Promise<Float32Array> =>
    base.predict(batch, { ...(bf16 === undefined ? {} : { bf16 }), raw: true });
  return {
    engine: base.engine,
    classes: head.classes,
    imageBytes: base.imageBytes,
    featureDims: dims,
    predict: async (batch, options = {}) => {
      const out = applyHead(head, await features(batch, options.bf16), dims);
      if (!options.raw)
        for (let i = 0; i < out.length; i += head.classes) softmaxInPlace(out.subarray(i, i + head.classes));
      return out;
    },
    instances: async (batch, options = {}): Promise<InstanceOutputs> => {
      const x = await features(batch, options.bf16);
      return { logits: applyHead(head, x, dims), attention: null, features: x };
    },
    close: () => base.close(),
  };
}
