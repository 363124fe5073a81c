/**
 * A network spec and its tensors as an ONNX graph, written with onnx-proto (ONNX's own schema,
 * compiled by protobufjs) rather than by packing bytes. Each spec layer maps to the ONNX
 * operators that compute what the addon computes (network.cc): TensorFlow's 'same' padding as
 * explicit pads (the odd pixel after), Keras' average over real pixels only, Keras' flatten
 * order (height, width, channels). The model's input step is in the graph: uint8 NHWC pixels
 * (or float NCHW pixel values), channel order, (x - mean) / std. Only operators that OpenCV's
 * dnn (4.6, Debian's) reads as well as ONNX Runtime: no Gather for the channel order, no Clip.
 */
import onnxProto, { type onnx as Onnx } from 'onnx-proto';

import { ConfigError, EngineInputError } from '../errors.js';
import type { NamedTensor } from './network.js';
import { pair, samePadding, type LayerSpec, type NetworkSpec } from './spec.js';

const { onnx } = onnxProto;

/** The opsets the exporter writes: from 13 (Softmax on one axis) to what ONNX Runtime 1.30 reads. */
export const ONNX_OPSETS = { min: 13, max: 21, default: 17 } as const;
/** ONNX IR version 8 (ONNX 1.10 to 1.12), the newest onnx-proto 8 knows; ONNX Runtime reads it. */
const IR_VERSION = 8;

/** The graph's input: uint8 pixels in NHWC (as the addon takes them) or float pixel values in NCHW. */
export const ONNX_INPUTS = ['uint8-nhwc', 'float-nchw'] as const;
export type OnnxInputLayout = (typeof ONNX_INPUTS)[number];

export interface OnnxExportOptions {
  opset?: number;
  input?: OnnxInputLayout;
  /** Name of the last layer's output (default 'logits'). */
  output?: string;
  /** Also a softmax of it, named 'probabilities'. */
  probabilities?: boolean;
  /** Key-value pairs stored in the model's metadata. */
  metadata?: Record<string, string>;
  producerVersion: string;
}

const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;
const UINT8 = onnx.TensorProto.DataType.UINT8;

type Attribute = Onnx.IAttributeProto;
const ints = (name: string, values: readonly number[]): Attribute => ({
  name,
  type: onnx.AttributeProto.AttributeType.INTS,
  ints: [...values],
});
const int = (name: string, value: number): Attribute => ({
  name,
  type: onnx.AttributeProto.AttributeType.INT,
  i: value,
});
const float = (name: string, value: number): Attribute => ({
  name,
  type: onnx.AttributeProto.AttributeType.FLOAT,
  f: value,
});

/** Activation shape without the batch axis, as the spec resolver tracks it. */
type Shape = readonly number[];

class GraphBuilder {
  readonly nodes: Onnx.INodeProto[] = [];
  readonly initializers: Onnx.ITensorProto[] = [];
  /** An attention pool's per-instance score, exported as the output 'attention' ([batch, 1]). */
  attention: string | undefined;
  readonly #tensors: Map<string, NamedTensor>;
  #count = 0;

  constructor(tensors: readonly NamedTensor[]) {
    this.#tensors = new Map(tensors.map((t) => [t.name, t]));
  }

  node(op: string, inputs: readonly string[], attributes: Attribute[] = [], output?: string): string {
    const name = output ?? `${op.toLowerCase()}_${this.#count++}`;
    this.nodes.push({ opType: op, name, input: [...inputs], output: [name], attribute: attributes });
    return name;
  }

  /** A package tensor as an initializer, checked against the shape the layer needs. */
  weight(name: string, shape: readonly number[]): string {
    const tensor = this.#tensors.get(name);
    if (!tensor) throw new EngineInputError(`the weights lack '${name}', which the network spec needs`);
    if (tensor.shape.join(',') !== shape.join(','))
      throw new EngineInputError(
        `the tensor '${name}' has shape [${tensor.shape.join(',')}] but the spec needs [${shape.join(',')}]`,
      );
    this.#add(name, tensor.data, shape, FLOAT);
    return name;
  }

  constant(values: readonly number[], dims: readonly number[], type: 'float' | 'int64'): string {
    const name = `const_${this.#count++}`;
    this.#add(name, values, dims, type === 'float' ? FLOAT : INT64);
    return name;
  }

  #add(
    name: string,
    values: ArrayLike<number>,
    dims: readonly number[],
    dataType: Onnx.TensorProto.DataType,
  ): void {
    const array =
      dataType === FLOAT ? Float32Array.from(values) : BigInt64Array.from(Array.from(values, BigInt));
    this.initializers.push({
      name,
      dims: [...dims],
      dataType,
      rawData: new Uint8Array(array.buffer, array.byteOffset, array.byteLength),
    });
  }
}

/**
 * The graph's input step: pixels to the network's normalised NCHW float input. The channel order
 * is three one-channel Slices and a Concat, not a Gather with three indices, which OpenCV's ONNX
 * importer (cv2.dnn) cannot read; every op here runs in ONNX Runtime and OpenCV alike.
 */
function inputStep(graph: GraphBuilder, spec: NetworkSpec, layout: OnnxInputLayout, input: string): string {
  const { channels, channelOrder, mean, std } = spec.input;
  let x =
    layout === 'uint8-nhwc'
      ? graph.node(
          'Transpose',
          [graph.node('Cast', [input], [int('to', FLOAT)])],
          [ints('perm', [0, 3, 1, 2])],
        )
      : input;
  if (channelOrder === 'bgr') x = reversedChannels(graph, x, channels);
  const dims = [channels, 1, 1];
  x = graph.node('Sub', [x, graph.constant(mean, dims, 'float')]);
  return graph.node('Div', [x, graph.constant(std, dims, 'float')]);
}

/** The channels of an NCHW tensor in reverse order (RGB to BGR), one Slice each, concatenated. */
function reversedChannels(graph: GraphBuilder, x: string, channels: number): string {
  const axes = graph.constant([1], [1], 'int64');
  const slices = Array.from({ length: channels }, (_, k) => {
    const c = channels - 1 - k;
    const bounds = [graph.constant([c], [1], 'int64'), graph.constant([c + 1], [1], 'int64')];
    return graph.node('Slice', [x, ...bounds, axes]);
  });
  return graph.node('Concat', slices, [int('axis', 1)]);
}

/** 'same' pads in ONNX's order [top, left, bottom, right] for a kernel over an activation. */
function pads(shape: Shape, kernel: [number, number], stride: [number, number], same: boolean): number[] {
  if (!same) return [0, 0, 0, 0];
  const [top, bottom] = samePadding(shape[1] ?? 0, kernel[0], stride[0]);
  const [left, right] = samePadding(shape[2] ?? 0, kernel[1], stride[1]);
  return [top, left, bottom, right];
}

const spatialOut = (
  shape: Shape,
  kernel: [number, number],
  stride: [number, number],
  p: number[],
): [number, number] => [
  Math.floor(((shape[1] ?? 0) + (p[0] ?? 0) + (p[2] ?? 0) - kernel[0]) / stride[0]) + 1,
  Math.floor(((shape[2] ?? 0) + (p[1] ?? 0) + (p[3] ?? 0) - kernel[1]) / stride[1]) + 1,
];

function emitLayers(
  graph: GraphBuilder,
  layers: readonly LayerSpec[],
  x: string,
  shape: Shape,
): { x: string; shape: Shape } {
  for (const layer of layers) ({ x, shape } = emitLayer(graph, layer, x, shape));
  return { x, shape };
}

function emitLayer(
  graph: GraphBuilder,
  layer: LayerSpec,
  x: string,
  shape: Shape,
): { x: string; shape: Shape } {
  const [c = 0, h = 0, w = 0] = shape;
  switch (layer.type) {
    case 'conv2d': {
      const kernel = pair(layer.kernelSize, 'kernelSize');
      const stride = pair(layer.strides ?? 1, 'strides');
      const groups = layer.groups ?? 1;
      const p = pads(shape, kernel, stride, layer.padding === 'same');
      const inputs = [x, graph.weight(`${layer.name}.weight`, [layer.filters, c / groups, ...kernel])];
      if (layer.useBias ?? true) inputs.push(graph.weight(`${layer.name}.bias`, [layer.filters]));
      const attributes = [
        ints('kernel_shape', kernel),
        ints('strides', stride),
        ints('pads', p),
        int('group', groups),
      ];
      return {
        x: graph.node('Conv', inputs, attributes),
        shape: [layer.filters, ...spatialOut(shape, kernel, stride, p)],
      };
    }
    case 'batchNorm': {
      const names = ['weight', 'bias', 'running_mean', 'running_var'].map((t) =>
        graph.weight(`${layer.name}.${t}`, [c]),
      );
      return {
        x: graph.node('BatchNormalization', [x, ...names], [float('epsilon', layer.epsilon ?? 1e-3)]),
        shape,
      };
    }
    case 'maxPool':
    case 'avgPool': {
      const kernel = pair(layer.poolSize, 'poolSize');
      const stride = pair(layer.strides ?? kernel, 'strides');
      const p = pads(shape, kernel, stride, layer.padding === 'same');
      const attributes = [ints('kernel_shape', kernel), ints('strides', stride), ints('pads', p)];
      // Keras averages over the real pixels only; ONNX's count_include_pad=0 does the same.
      if (layer.type === 'avgPool') attributes.push(int('count_include_pad', 0));
      const op = layer.type === 'maxPool' ? 'MaxPool' : 'AveragePool';
      return { x: graph.node(op, [x], attributes), shape: [c, ...spatialOut(shape, kernel, stride, p)] };
    }
    case 'relu':
      return { x: graph.node('Relu', [x]), shape };
    case 'relu6': {
      // min(max(x, 0), 6) as 6 - relu(6 - relu(x)): OpenCV's importer reads no Clip with min and max
      // inputs (opset 11 on). Exact from 3 up; below 3, within half an ulp of 6 (2.4e-7).
      const six = graph.constant([6], [], 'float');
      const below = graph.node('Relu', [graph.node('Sub', [six, graph.node('Relu', [x])])]);
      return { x: graph.node('Sub', [six, below]), shape };
    }
    case 'dropout':
      return { x, shape };
    case 'zeroPad': {
      const [top, bottom, left, right] = layer.padding;
      const padding = graph.constant([0, 0, top, left, 0, 0, bottom, right], [8], 'int64');
      return { x: graph.node('Pad', [x, padding]), shape: [c, h + top + bottom, w + left + right] };
    }
    case 'globalAvgPool':
      return {
        x: graph.node('Flatten', [graph.node('GlobalAveragePool', [x])], [int('axis', 1)]),
        shape: [c],
      };
    case 'flatten': {
      if (shape.length !== 3) return { x, shape };
      // Keras' order: height, width, channels.
      const nhwc = graph.node('Transpose', [x], [ints('perm', [0, 2, 3, 1])]);
      return { x: graph.node('Flatten', [nhwc], [int('axis', 1)]), shape: [c * h * w] };
    }
    case 'linear': {
      const inputs = [x, graph.weight(`${layer.name}.weight`, [layer.units, c])];
      if (layer.useBias ?? true) inputs.push(graph.weight(`${layer.name}.bias`, [layer.units]));
      return { x: graph.node('Gemm', inputs, [int('transB', 1)]), shape: [layer.units] };
    }
    case 'attentionPool':
      return emitAttentionPool(graph, layer, x, shape);
    case 'residual': {
      const body = emitLayers(graph, layer.body, x, shape);
      const shortcut = layer.shortcut ? emitLayers(graph, layer.shortcut, x, shape) : { x, shape };
      return { x: graph.node('Add', [body.x, shortcut.x]), shape: body.shape };
    }
  }
}

/**
 * An attention pool, exported per instance (a bag of one, engine/mil-head.ts): the instance passes
 * through, and its attention score, for pooling over an image or slide outside, is a graph output.
 */
function emitAttentionPool(
  graph: GraphBuilder,
  layer: Extract<LayerSpec, { type: 'attentionPool' }>,
  x: string,
  shape: Shape,
): { x: string; shape: Shape } {
  const [c = 0, h = 0, w = 0] = shape;
  if (shape.length !== 1 && (h !== 1 || w !== 1))
    throw new ConfigError('an attention pool is exported for one instance at a time (a flat or 1x1 input)');
  const instance = shape.length === 1 ? x : graph.node('Flatten', [x], [int('axis', 1)]);
  const dense = (input: string, suffix: string, inFeatures: number, units: number): string =>
    emitLayer(graph, { type: 'linear', name: `${layer.name}${suffix}`, units }, input, [inFeatures]).x;
  let hidden = graph.node('Tanh', [dense(instance, '_V', c, layer.units)]);
  if (layer.gated ?? true)
    hidden = graph.node('Mul', [hidden, graph.node('Sigmoid', [dense(instance, '_U', c, layer.units)])]);
  graph.attention = dense(hidden, '_w', layer.units, 1);
  return { x: instance, shape: [c] };
}

function tensorType(elemType: number, dims: readonly (number | string)[]): Onnx.ITypeProto {
  return {
    tensorType: {
      elemType,
      shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
    },
  };
}

/**
 * The ONNX model of a network: bytes of a ModelProto. The output is whatever the layers end in
 * (logits for a classifier, features for a backbone), flat per image.
 */
export function networkToOnnx(
  spec: NetworkSpec,
  tensors: readonly NamedTensor[],
  options: OnnxExportOptions,
): Uint8Array {
  const opset = options.opset ?? ONNX_OPSETS.default;
  if (!Number.isInteger(opset) || opset < ONNX_OPSETS.min || opset > ONNX_OPSETS.max)
    throw new ConfigError(
      `the ONNX opset must be an integer from ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max} (got ${opset})`,
    );
  const layout = options.input ?? 'uint8-nhwc';
  if (!ONNX_INPUTS.includes(layout))
    throw new ConfigError(
      `the ONNX input must be one of ${ONNX_INPUTS.join(', ')} (got ${layout as string})`,
    );
  const graph = new GraphBuilder(tensors);
  const { height, width, channels } = spec.input;
  const start = inputStep(graph, spec, layout, 'pixels');
  const end = emitLayers(graph, spec.layers, start, [channels, height, width]);
  if (end.shape.length !== 1)
    throw new ConfigError(
      `the network ends in shape [${end.shape.join(',')}]; an exported graph must end flat`,
    );
  const outputName = options.output ?? 'logits';
  graph.node('Identity', [end.x], [], outputName);
  const outputs = [{ name: outputName, type: tensorType(FLOAT, ['batch', end.shape[0] ?? 0]) }];
  if (options.probabilities) {
    graph.node('Softmax', [outputName], [int('axis', 1)], 'probabilities');
    outputs.push({ name: 'probabilities', type: tensorType(FLOAT, ['batch', end.shape[0] ?? 0]) });
  }
  if (graph.attention) {
    graph.node('Identity', [graph.attention], [], 'attention');
    outputs.push({ name: 'attention', type: tensorType(FLOAT, ['batch', 1]) });
  }
  const inputDims =
    layout === 'uint8-nhwc' ? ['batch', height, width, channels] : ['batch', channels, height, width];
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    opsetImport: [{ domain: '', version: opset }],
    producerName: 'pathotype',
    producerVersion: options.producerVersion,
    graph: {
      name: spec.name,
      node: graph.nodes,
      initializer: graph.initializers,
      input: [{ name: 'pixels', type: tensorType(layout === 'uint8-nhwc' ? UINT8 : FLOAT, inputDims) }],
      output: outputs,
    },
    metadataProps: Object.entries(options.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}
