/**
 * Two engines can run a trained network forward on the same weights: the addon, and ONNX
 * Runtime on the graph its spec exports to (onnx-graph.ts), whose outputs agree with the addon's
 * to 1e-4. `auto` takes the faster one as `pathotype bench engine` measures it: ONNX Runtime in
 * fp32 (it fuses batch norm into the convolutions; the frozen ResNet50 res4 pass at 96 px, the
 * main job's hot path, ran at 322 against 152 patches/s on the 2-core EPYC of the README's
 * figures, VGG16 at 168 against 148), the addon where bf16 autocast applies (421 patches/s there;
 * ONNX Runtime has no bf16 path on CPU). Training steps are always the addon's.
 */
import { EngineInputError } from '../errors.js';
import { getThreads, type Network } from './network.js';
import { networkToOnnx } from './onnx-graph.js';
import { OnnxSession } from './onnx-runtime.js';

export const INFERENCE_ENGINES = ['auto', 'addon', 'onnxruntime'] as const;
export type InferenceEngineSetting = (typeof INFERENCE_ENGINES)[number];
export type InferenceEngine = Exclude<InferenceEngineSetting, 'auto'>;

/** `PATHOTYPE_INFERENCE_ENGINE=auto|addon|onnxruntime` overrides the setting (as PATHOTYPE_BF16 does precision). */
export function resolveInferenceEngine(setting: InferenceEngineSetting, bf16: boolean): InferenceEngine {
  const forced = process.env.PATHOTYPE_INFERENCE_ENGINE;
  const chosen = forced && forced.length > 0 ? forced : setting;
  if (!(INFERENCE_ENGINES as readonly string[]).includes(chosen))
    throw new EngineInputError(
      `PATHOTYPE_INFERENCE_ENGINE must be one of ${INFERENCE_ENGINES.join(', ')} (got '${chosen}')`,
    );
  if (chosen === 'auto') return bf16 ? 'addon' : 'onnxruntime';
  return chosen as InferenceEngine;
}

/** What the predictor and the probe need of a network run forward: the addon's predict, on either engine. */
export interface PatchRunner {
  readonly engine: InferenceEngine;
  /** Values per patch of its output: the classes of a classifier, the features of a base. */
  readonly classes: number;
  readonly imageBytes: number;
  /** Values per patch of the features `instances` gives with the logits; absent: it gives none. */
  readonly featureDims?: number;
  /** Softmax probabilities of uint8 NHWC patches, or with `raw` the last layer's output; bf16 applies to the addon only. */
  predict(batch: Uint8Array, options?: { bf16?: boolean; raw?: boolean }): Promise<Float32Array>;
  /**
   * A multiple-instance package's runner (engine/mil-head.ts): each patch's logits and, under
   * attention pooling, its attention score (before the softmax over its image or slide), in one pass.
   */
  instances?(batch: Uint8Array, options?: { bf16?: boolean }): Promise<InstanceOutputs>;
  close(): Promise<void>;
}

export interface InstanceOutputs {
  logits: Float32Array;
  attention: Float32Array | null;
  /** The features the logits were computed from, `featureDims` per patch (engine/linear-head.ts). */
  features?: Float32Array;
}

/** The addon's network as a patch runner: nothing to open or close. */
export function addonRunner(network: Network): PatchRunner {
  return {
    engine: 'addon',
    classes: network.spec.outputShape[0] ?? 0,
    imageBytes: network.imageBytes,
    predict: (batch, options) => network.predict(batch, options),
    close: () => Promise.resolve(),
  };
}

export async function openPatchRunner(
  network: Network,
  engine: InferenceEngine,
  producerVersion: string,
): Promise<PatchRunner> {
  if (engine === 'addon') return addonRunner(network);
  const graph = networkToOnnx(network.spec, await network.exportTensors(), {
    producerVersion,
    probabilities: true,
  });
  const session = await OnnxSession.open(graph, { threads: getThreads() });
  const { height, width, channels } = network.spec.input;
  return {
    engine,
    classes: network.spec.outputShape[0] ?? 0,
    imageBytes: network.imageBytes,
    predict: async (batch, options = {}) => {
      const name = options.raw ? 'logits' : 'probabilities';
      const n = batch.length / network.imageBytes;
      const out = await session.run(batch, [n, height, width, channels], [name]);
      return out.get(name)?.data ?? new Float32Array();
    },
    close: () => session.close(),
  };
}
