/**
 * An encoder the user brings: an ONNX graph that turns a batch of patches into one feature
 * vector each (UNI, CTransPath, Phikon exported with torch.onnx.export, or a pathotype network
 * exported with `pathotype export --features`). Its declared geometry and normalisation are
 * checked against the graph when it is opened, so a mismatch is a clear error before any work.
 *
 * Inputs it takes: float32 NCHW [batch, 3, S, S] (PyTorch's convention: RGB in [0, 1], then
 * (x - mean) / std, done here), or uint8 NHWC [batch, S, S, 3] (pathotype's own export: its
 * normalisation is in the graph, so mean and std are not applied).
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';

import { PathotypeError } from '../errors.js';
import { getThreads } from './network.js';
import type { PatchRunner } from './inference-engine.js';
import { linearHeadRunner, type LinearHead } from './linear-head.js';
import { vectorInput, type NetworkSpec } from './spec.js';
import { CLASSIFIER_LAYER } from './zoo.js';
import { nhwcToNchwFloat, OnnxSession, type OnnxValue } from './onnx-runtime.js';

export interface EncoderConfig {
  /** Path of the .onnx file. */
  onnx: string;
  /** Side in pixels of the square patches it takes. */
  inputSize: number;
  /** Microns per pixel it was trained at. */
  mpp: number;
  /** Per channel, RGB, on pixel values scaled to [0, 1] (float inputs only). */
  mean: [number, number, number];
  std: [number, number, number];
  /** The output to read (default: the graph's first). */
  output?: string;
}

/** ImageNet's, as torchvision, timm, UNI and Phikon use. */
export const IMAGENET_MEAN: [number, number, number] = [0.485, 0.456, 0.406];
export const IMAGENET_STD: [number, number, number] = [0.229, 0.224, 0.225];

const onnxError = (message: string): PathotypeError => new PathotypeError('ERR_ONNX', message);

/** How an opened graph is fed and read. */
interface EncoderGraph {
  config: EncoderConfig;
  layout: 'float-nchw' | 'uint8-nhwc';
  output: string;
  session: OnnxSession;
}

async function runGraph(
  graph: EncoderGraph,
  batch: Uint8Array,
): Promise<{ data: Float32Array; dims: number[] }> {
  const { config, layout, output, session } = graph;
  const side = config.inputSize;
  const n = batch.length / (side * side * 3);
  const input =
    layout === 'uint8-nhwc'
      ? batch
      : nhwcToNchwFloat(
          batch,
          [n, side, side, 3],
          (v, c) => (v / 255 - (config.mean[c] ?? 0)) / (config.std[c] ?? 1),
        );
  const dims = layout === 'uint8-nhwc' ? [n, side, side, 3] : [n, 3, side, side];
  const out = (await session.run(input, dims, [output])).get(output);
  if (!out) throw onnxError(`the encoder gave no '${output}'`);
  return out;
}

/**
 * What is wrong with patches of `patchSize` px at `mpp` um/px (null: each image its own) for this
 * encoder, or null when they are its input: the same side, and microns per pixel within 1%.
 */
export function encoderGeometryMismatch(
  config: Pick<EncoderConfig, 'inputSize' | 'mpp'>,
  patchSize: number,
  mpp: number | null,
): string | null {
  if (patchSize === config.inputSize && mpp !== null && Math.abs(mpp - config.mpp) / config.mpp <= 0.01)
    return null;
  return (
    `the encoder takes ${config.inputSize} px patches at ${config.mpp} um/px, but the patches are ${patchSize} px at ` +
    `${mpp === null ? 'each image its own resolution' : `${mpp.toFixed(4)} um/px`}: prepare with --patch-size ${config.inputSize} --mpp ${config.mpp}`
  );
}

export class OnnxEncoder {
  private constructor(
    readonly graph: EncoderGraph,
    readonly sha256: string,
    readonly dims: number,
  ) {}

  get config(): EncoderConfig {
    return this.graph.config;
  }

  get output(): string {
    return this.graph.output;
  }

  /** Opens and checks an encoder: an ONNX file, one image input of the declared size, a 2-D output. */
  static async open(config: EncoderConfig): Promise<OnnxEncoder> {
    if (!existsSync(config.onnx)) throw onnxError(`the encoder ${config.onnx} does not exist`);
    const bytes = await readFile(config.onnx);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const session = await OnnxSession.open(bytes, { threads: getThreads() });
    try {
      const layout = inputLayout(session.inputs, config);
      const output = config.output ?? session.outputs[0]?.name ?? '';
      if (!session.outputs.some((o) => o.name === output))
        throw onnxError(
          `the encoder has no output '${output}' (it has ${session.outputs.map((o) => o.name).join(', ')})`,
        );
      const graph = { config, layout, output, session };
      const probe = await runGraph(graph, new Uint8Array(config.inputSize * config.inputSize * 3));
      if (probe.dims.length !== 2 || probe.dims[0] !== 1)
        throw onnxError(
          `the encoder's output '${output}' is [${probe.dims.join(', ')}] for one patch; a [batch, features] output is needed (pool or flatten it in the export)`,
        );
      return new OnnxEncoder(graph, sha256, probe.dims[1] ?? 0);
    } catch (error) {
      await session.close();
      throw error;
    }
  }

  /** Features of uint8 NHWC patches of the encoder's input size, one row per patch. */
  async features(batch: Uint8Array): Promise<Float32Array> {
    return (await runGraph(this.graph, batch)).data;
  }

  close(): Promise<void> {
    return this.graph.session.close();
  }
}

/** The graph's one input, checked against the declared size: NCHW float or NHWC uint8. */
function inputLayout(inputs: OnnxValue[], config: EncoderConfig): 'float-nchw' | 'uint8-nhwc' {
  const [input] = inputs;
  if (!input || inputs.length !== 1)
    throw onnxError(`the encoder has ${inputs.length} inputs; one image input is needed`);
  const shape = input.shape;
  const fixed = (d: number | string | undefined, want: number): boolean =>
    typeof d !== 'number' || d === want;
  const declared = `${config.inputSize}x${config.inputSize}`;
  if (input.type === 'float32' && shape.length === 4 && fixed(shape[1], 3)) {
    if (!fixed(shape[2], config.inputSize) || !fixed(shape[3], config.inputSize))
      throw onnxError(
        `the recipe declares ${declared} patches but the encoder's input is [${shape.join(', ')}]: give its inputSize`,
      );
    return 'float-nchw';
  }
  if (input.type === 'uint8' && shape.length === 4 && fixed(shape[3], 3)) {
    if (!fixed(shape[1], config.inputSize) || !fixed(shape[2], config.inputSize))
      throw onnxError(
        `the recipe declares ${declared} patches but the encoder's input is [${shape.join(', ')}]: give its inputSize`,
      );
    return 'uint8-nhwc';
  }
  throw onnxError(
    `the encoder's input '${input.name}' is ${input.type} [${shape.join(', ')}]; float32 [batch, 3, H, W] or uint8 [batch, H, W, 3] is needed`,
  );
}

/**
 * The network a package with an encoder keeps for the addon: its linear head alone, taking the
 * encoder's features (its input is their width, one value per channel of a 1x1 image).
 */
export function encoderHeadSpec(dims: number, classes: number): NetworkSpec {
  return {
    name: 'onnx_encoder_head',
    input: vectorInput(dims),
    classes,
    layers: [{ type: 'flatten' }, { type: 'linear', name: CLASSIFIER_LAYER, units: classes }],
  };
}

/** The identity over an encoder's features: the per-patch network of a multiple-instance package on an encoder. */
export function encoderFeatureSpec(dims: number): NetworkSpec {
  return {
    name: 'onnx_encoder_features',
    input: vectorInput(dims),
    classes: dims,
    layers: [{ type: 'flatten' }],
  };
}

/** The encoder as a patch runner over its features (a probe's frozen base); closing it closes the encoder. */
export function encoderFeatureRunner(encoder: OnnxEncoder): PatchRunner {
  const side = encoder.config.inputSize;
  return {
    engine: 'onnxruntime',
    classes: encoder.dims,
    imageBytes: side * side * 3,
    predict: (batch) => encoder.features(batch),
    close: () => encoder.close(),
  };
}

/** The encoder and its head as a patch runner: logits, or their softmax (and the features of the same pass). */
export function encoderRunner(encoder: OnnxEncoder, head: LinearHead): PatchRunner {
  return linearHeadRunner(encoderFeatureRunner(encoder), head);
}
