/**
 * The declarative network spec: plain data that names every layer, validated and shape-checked
 * here before the native side builds it. Layer and weight names follow Keras, so that Keras
 * weights map onto them one to one.
 */
import { EngineInputError } from '../errors.js';

export type Padding = 'same' | 'valid';
export type Pair = number | readonly [number, number];

export interface Conv2dLayer {
  type: 'conv2d';
  name: string;
  filters: number;
  kernelSize: Pair;
  strides?: Pair;
  padding: Padding;
  /** Channel groups; equal to the input channels (and a multiple of them as filters) for depthwise. */
  groups?: number;
  useBias?: boolean;
}

export interface BatchNormLayer {
  type: 'batchNorm';
  name: string;
  /** Keras semantics: the weight of the old running value (LAYER_DEFAULTS.batchNormMomentum when absent). */
  momentum?: number;
  epsilon?: number;
}

export interface PoolLayer {
  type: 'maxPool' | 'avgPool';
  poolSize: Pair;
  strides?: Pair;
  padding: Padding;
}

export interface LinearLayer {
  type: 'linear';
  name: string;
  units: number;
  useBias?: boolean;
}

export interface DropoutLayer {
  type: 'dropout';
  rate: number;
}

export interface ZeroPadLayer {
  type: 'zeroPad';
  /** [top, bottom, left, right] */
  padding: readonly [number, number, number, number];
}

export interface ResidualLayer {
  type: 'residual';
  name?: string;
  body: readonly LayerSpec[];
  /** Identity when absent. */
  shortcut?: readonly LayerSpec[];
}

/**
 * Gated attention pooling (Ilse et al. 2018) over a bag's instances laid along the width: each
 * instance's score w . (tanh(V h) * sigmoid(U h)) (without the sigmoid gate when `gated` is
 * false), and the bag's vector the instances' features weighted by the softmax of the scores.
 * Its weights are `<name>_V`, `<name>_U` and `<name>_w`.
 */
export interface AttentionPoolLayer {
  type: 'attentionPool';
  name: string;
  /** Size of the attention's hidden layer. */
  units: number;
  gated?: boolean;
}

export interface SimpleLayer {
  type: 'relu' | 'relu6' | 'globalAvgPool' | 'flatten';
}

export type LayerSpec =
  | Conv2dLayer
  | BatchNormLayer
  | PoolLayer
  | LinearLayer
  | DropoutLayer
  | ZeroPadLayer
  | ResidualLayer
  | AttentionPoolLayer
  | SimpleLayer;

/** How uint8 pixels become network input: reorder channels, then (x - mean) / std per channel. */
export interface InputSpec {
  height: number;
  width: number;
  channels: number;
  channelOrder: 'rgb' | 'bgr';
  mean: readonly number[];
  std: readonly number[];
  /**
   * A bag network: each input is a bag of any number of instances laid along the width
   * (`width` is then 1, the shape checks assume); only attention or global pooling joins them.
   */
  bag?: boolean;
}

/** The input of a network over bags of `features`-wide instances (patch features), taken as they are. */
export function bagInput(features: number): InputSpec {
  return { ...vectorInput(features), bag: true };
}

/** The input of a network over vectors: `features` values as the channels of a 1x1 image, taken as they are. */
export function vectorInput(features: number, mean = 0, std = 1): InputSpec {
  return {
    height: 1,
    width: 1,
    channels: features,
    channelOrder: 'rgb',
    mean: new Array<number>(features).fill(mean),
    std: new Array<number>(features).fill(std),
  };
}

export interface NetworkSpec {
  /** Architecture name, e.g. 'vgg16'; informative. */
  name: string;
  input: InputSpec;
  classes: number;
  layers: readonly LayerSpec[];
}

/** Shape of an activation without the batch axis: [channels, height, width] or [features]. */
export type ActivationShape = readonly number[];

export interface ResolvedSpec extends NetworkSpec {
  /** Parameter count (weights and biases; batch-norm statistics excluded). */
  parameterCount: number;
  /**
   * FLOPs of one sample's forward pass, counted from the layers: 2 per multiply-add of each
   * convolution and linear layer (the rest is a few percent). Training is about 3x (forward, and
   * the gradients of inputs and of weights).
   */
  flopsPerSample: number;
  outputShape: ActivationShape;
}

const NAME = /^[A-Za-z][A-Za-z0-9_]*$/;

export function pair(value: Pair, what: string): [number, number] {
  const [a, b] = typeof value === 'number' ? [value, value] : value;
  if (!isPositiveInt(a) || !isPositiveInt(b)) {
    throw new EngineInputError(`${what} must be a positive integer or a pair of them`);
  }
  return [a, b];
}

function isPositiveInt(value: unknown): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value > 0;
}

/** TensorFlow's 'same' padding of one axis: [before, after], the odd pixel after (as the addon pads). */
export function samePadding(input: number, kernel: number, stride: number): [number, number] {
  const out = Math.ceil(input / stride);
  const total = Math.max((out - 1) * stride + kernel - input, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

export function outSize(input: number, kernel: number, stride: number, padding: Padding): number {
  return padding === 'same' ? Math.ceil(input / stride) : Math.floor((input - kernel) / stride) + 1;
}

interface Walk {
  names: Set<string>;
  parameters: number;
  /** Floating-point operations of one sample's forward pass: 2 per multiply-add of convolutions and linear layers. */
  flops: number;
}

/**
 * Checks a spec and computes each layer's shapes. Returns the native form (with the input
 * channels and features each parametric layer needs) and the totals.
 */
/** The shape a spec's layers end in (without the batch axis), whatever its `classes` says. */
export function outputShapeOf(spec: NetworkSpec): ActivationShape {
  const { input } = spec;
  const walk: Walk = { names: new Set(), parameters: 0, flops: 0 };
  return resolveLayers(spec.layers, [input.channels, input.height, input.width], walk, 'spec.layers').shape;
}

export function resolveSpec(spec: NetworkSpec): { resolved: ResolvedSpec; native: object } {
  if (typeof spec !== 'object' || spec === null)
    throw new EngineInputError('the network spec must be an object');
  const { input } = spec;
  if (typeof input !== 'object' || input === null) throw new EngineInputError('spec.input must be an object');
  if (!isPositiveInt(input.height) || !isPositiveInt(input.width) || !isPositiveInt(input.channels)) {
    throw new EngineInputError('spec.input height, width and channels must be positive integers');
  }
  if (input.channelOrder !== 'rgb' && input.channelOrder !== 'bgr') {
    throw new EngineInputError("spec.input.channelOrder must be 'rgb' or 'bgr'");
  }
  if (input.channelOrder === 'bgr' && input.channels !== 3) {
    throw new EngineInputError('bgr channel order needs 3 channels');
  }
  for (const key of ['mean', 'std'] as const) {
    const values = input[key];
    if (!Array.isArray(values) || values.length !== input.channels || !values.every(Number.isFinite)) {
      throw new EngineInputError(`spec.input.${key} needs one finite number per channel`);
    }
  }
  if (!input.std.every((s) => s !== 0)) throw new EngineInputError('spec.input.std must not contain 0');
  if (input.bag !== undefined && typeof input.bag !== 'boolean')
    throw new EngineInputError('spec.input.bag must be a boolean');
  if (input.bag && input.width !== 1) throw new EngineInputError('a bag network declares width 1');
  if (!isPositiveInt(spec.classes) || spec.classes < 2) {
    throw new EngineInputError('spec.classes must be an integer of at least 2');
  }
  const walk: Walk = { names: new Set(), parameters: 0, flops: 0 };
  const start: ActivationShape = [input.channels, input.height, input.width];
  const { layers, shape } = resolveLayers(spec.layers, start, walk, 'spec.layers');
  if (shape.length !== 1 || shape[0] !== spec.classes) {
    throw new EngineInputError(
      `the network ends in shape [${shape.join(',')}] but must end in [${spec.classes}], one logit per class`,
    );
  }
  const resolved: ResolvedSpec = {
    ...spec,
    parameterCount: walk.parameters,
    flopsPerSample: walk.flops,
    outputShape: shape,
  };
  return {
    resolved,
    native: { input: { ...input, bag: input.bag ?? false }, classes: spec.classes, layers },
  };
}

function resolveLayers(
  layers: readonly LayerSpec[],
  start: ActivationShape,
  walk: Walk,
  where: string,
): { layers: object[]; shape: ActivationShape } {
  if (!Array.isArray(layers)) throw new EngineInputError(`${where} must be an array of layers`);
  let shape = start;
  const out: object[] = [];
  for (const [i, layer] of (layers as readonly LayerSpec[]).entries()) {
    const step = resolveLayer(layer, shape, walk, `${where}[${i}]`);
    out.push(step.layer);
    shape = step.shape;
  }
  return { layers: out, shape };
}

function claimName(name: unknown, walk: Walk, where: string): string {
  if (typeof name !== 'string' || !NAME.test(name)) {
    throw new EngineInputError(
      `${where}: a layer name must be letters, digits and '_' (got ${String(name)})`,
    );
  }
  if (walk.names.has(name)) throw new EngineInputError(`${where}: the layer name '${name}' is used twice`);
  walk.names.add(name);
  return name;
}

function spatial(shape: ActivationShape, where: string, type: string): [number, number, number] {
  const [c, h, w] = shape;
  if (shape.length !== 3 || c === undefined || h === undefined || w === undefined) {
    throw new EngineInputError(`${where}: ${type} needs an image-shaped input, got [${shape.join(',')}]`);
  }
  return [c, h, w];
}

/**
 * Keras' layer defaults, written once: the spec is resolved with them filled in, and the addon
 * reads every field as given. A pool's stride defaults to its size.
 */
export const LAYER_DEFAULTS = {
  strides: 1,
  groups: 1,
  useBias: true,
  batchNormMomentum: 0.99,
  batchNormEpsilon: 1e-3,
  attentionGated: true,
} as const;

function resolveConv2d(
  layer: Extract<LayerSpec, { type: 'conv2d' }>,
  shape: ActivationShape,
  walk: Walk,
  where: string,
): { layer: object; shape: ActivationShape } {
  const name = claimName(layer.name, walk, where);
  const [c, h, w] = spatial(shape, where, 'conv2d');
  const kernel = pair(layer.kernelSize, `${where}.kernelSize`);
  const strides = pair(layer.strides ?? LAYER_DEFAULTS.strides, `${where}.strides`);
  const groups = layer.groups ?? LAYER_DEFAULTS.groups;
  if (!isPositiveInt(layer.filters))
    throw new EngineInputError(`${where}.filters must be a positive integer`);
  if (!isPositiveInt(groups) || c % groups !== 0 || layer.filters % groups !== 0) {
    throw new EngineInputError(
      `${where}.groups (${String(groups)}) must divide the input channels (${c}) and the filters (${layer.filters})`,
    );
  }
  checkPadding(layer.padding, where);
  const useBias = layer.useBias ?? LAYER_DEFAULTS.useBias;
  const oh = outSize(h, kernel[0], strides[0], layer.padding);
  const ow = outSize(w, kernel[1], strides[1], layer.padding);
  if (oh < 1 || ow < 1)
    throw new EngineInputError(`${where}: the input ${h}x${w} is too small for '${name}'`);
  walk.parameters += layer.filters * (c / groups) * kernel[0] * kernel[1] + (useBias ? layer.filters : 0);
  walk.flops += 2 * oh * ow * layer.filters * (c / groups) * kernel[0] * kernel[1];
  return {
    layer: { ...layer, kernelSize: kernel, strides, groups, useBias, inChannels: c },
    shape: [layer.filters, oh, ow],
  };
}

function resolveLayer(
  layer: LayerSpec,
  shape: ActivationShape,
  walk: Walk,
  where: string,
): { layer: object; shape: ActivationShape } {
  if (typeof layer !== 'object' || layer === null) throw new EngineInputError(`${where} must be an object`);
  switch (layer.type) {
    case 'conv2d':
      return resolveConv2d(layer, shape, walk, where);
    case 'batchNorm': {
      claimName(layer.name, walk, where);
      const [c] = spatial(shape, where, 'batchNorm');
      const momentum = layer.momentum ?? LAYER_DEFAULTS.batchNormMomentum;
      const epsilon = layer.epsilon ?? LAYER_DEFAULTS.batchNormEpsilon;
      if (!(momentum >= 0 && momentum < 1) || !(epsilon > 0)) {
        throw new EngineInputError(`${where}: momentum must be in [0, 1) and epsilon above 0`);
      }
      walk.parameters += 2 * c;
      return { layer: { ...layer, momentum, epsilon, features: c }, shape };
    }
    case 'maxPool':
    case 'avgPool': {
      const [c, h, w] = spatial(shape, where, layer.type);
      const size = pair(layer.poolSize, `${where}.poolSize`);
      const strides = pair(layer.strides ?? size, `${where}.strides`);
      checkPadding(layer.padding, where);
      const oh = outSize(h, size[0], strides[0], layer.padding);
      const ow = outSize(w, size[1], strides[1], layer.padding);
      if (oh < 1 || ow < 1) throw new EngineInputError(`${where}: the input ${h}x${w} is too small to pool`);
      return { layer: { ...layer, poolSize: size, strides }, shape: [c, oh, ow] };
    }
    case 'zeroPad': {
      const [c, h, w] = spatial(shape, where, 'zeroPad');
      const p = layer.padding;
      if (!Array.isArray(p) || p.length !== 4 || !p.every((v) => Number.isInteger(v) && v >= 0)) {
        throw new EngineInputError(
          `${where}.padding must be [top, bottom, left, right] of non-negative integers`,
        );
      }
      return { layer, shape: [c, h + p[0] + p[1], w + p[2] + p[3]] };
    }
    case 'relu':
    case 'relu6':
      return { layer, shape };
    case 'dropout':
      if (!(layer.rate >= 0 && layer.rate < 1)) throw new EngineInputError(`${where}.rate must be in [0, 1)`);
      return { layer, shape };
    case 'globalAvgPool': {
      const [c] = spatial(shape, where, 'globalAvgPool');
      return { layer, shape: [c] };
    }
    case 'flatten':
      return { layer, shape: [shape.reduce((a, b) => a * b, 1)] };
    case 'linear': {
      claimName(layer.name, walk, where);
      const [features] = shape;
      if (shape.length !== 1 || features === undefined) {
        throw new EngineInputError(
          `${where}: linear needs a flat input; add flatten or globalAvgPool before it`,
        );
      }
      if (!isPositiveInt(layer.units))
        throw new EngineInputError(`${where}.units must be a positive integer`);
      const useBias = layer.useBias ?? LAYER_DEFAULTS.useBias;
      walk.parameters += features * layer.units + (useBias ? layer.units : 0);
      walk.flops += 2 * features * layer.units;
      return { layer: { ...layer, useBias, inFeatures: features }, shape: [layer.units] };
    }
    case 'attentionPool': {
      claimName(layer.name, walk, where);
      const [c, h, w] = spatial(shape, where, 'attentionPool');
      if (!isPositiveInt(layer.units))
        throw new EngineInputError(`${where}.units must be a positive integer`);
      const gated = layer.gated ?? LAYER_DEFAULTS.attentionGated;
      const branches = gated ? 2 : 1;
      walk.parameters += branches * (c * layer.units + layer.units) + layer.units + 1;
      walk.flops += h * w * 2 * (branches * c * layer.units + layer.units + c);
      return { layer: { ...layer, gated, inFeatures: c }, shape: [c] };
    }
    case 'residual': {
      if (layer.name !== undefined) claimName(layer.name, walk, where);
      const body = resolveLayers(layer.body, shape, walk, `${where}.body`);
      const shortcut = layer.shortcut
        ? resolveLayers(layer.shortcut, shape, walk, `${where}.shortcut`)
        : { layers: undefined, shape };
      if (body.shape.join(',') !== shortcut.shape.join(',')) {
        throw new EngineInputError(
          `${where}: the residual body ends in [${body.shape.join(',')}] but the shortcut in [${shortcut.shape.join(',')}]`,
        );
      }
      return { layer: { ...layer, body: body.layers, shortcut: shortcut.layers }, shape: body.shape };
    }
    default: {
      const type = (layer as { type?: unknown }).type;
      throw new EngineInputError(`${where}: unknown layer type '${String(type)}'`);
    }
  }
}

function checkPadding(padding: unknown, where: string): void {
  if (padding !== 'same' && padding !== 'valid') {
    throw new EngineInputError(`${where}.padding must be 'same' or 'valid'`);
  }
}
