/**
 * The model zoo: network specs with Keras' layer names and weight shapes, so that Keras and
 * TensorFlow.js ImageNet weights load onto them by name, each with a replaceable head.
 */
import { SPATIAL_POOLING, type SpatialPooling } from './pooling.js';
import { EngineInputError } from '../errors.js';
import { outputShapeOf, type InputSpec, type LayerSpec, type NetworkSpec } from './spec.js';

export interface HeadOptions {
  classes: number;
  /** How the feature map becomes a vector: 'flatten' (as KNIME's VGG16 top) or 'avg' (global average pooling, the default). */
  pooling?: SpatialPooling;
  /** Hidden dense layers (ReLU) before the classifier, e.g. [256]. */
  hidden?: readonly number[];
  /** Dropout before each dense layer. */
  dropout?: number;
}

export interface ZooOptions {
  /** Square input patch side in pixels. */
  inputSize: number;
  head: HeadOptions;
}

export interface MobileNetOptions extends ZooOptions {
  /** Width multiplier. */
  alpha?: number;
}

/** Keras 'caffe' preprocessing (VGG16): BGR order, ImageNet means subtracted, no scaling. */
export const CAFFE_INPUT = { channelOrder: 'bgr', mean: [103.939, 116.779, 123.68], std: [1, 1, 1] } as const;
/** Keras 'tf' preprocessing (MobileNets): RGB scaled to [-1, 1]. */
export const TF_INPUT = {
  channelOrder: 'rgb',
  mean: [127.5, 127.5, 127.5],
  std: [127.5, 127.5, 127.5],
} as const;

function input(size: number, preprocessing: Pick<InputSpec, 'channelOrder' | 'mean' | 'std'>): InputSpec {
  if (!Number.isInteger(size) || size < 1) throw new EngineInputError('inputSize must be a positive integer');
  return { height: size, width: size, channels: 3, ...preprocessing };
}

/** The classifier: the last layer of every zoo head, one logit per class. */
export const CLASSIFIER_LAYER = 'predictions';
/** Hidden dense layers of a zoo head are named with this prefix. */
export const HIDDEN_HEAD_PREFIX = 'head_';
/** Every layer of a replaceable head (and Keras MobileNet's own classifier): what 'trainable: head' trains. */
export const HEAD_PREFIXES: readonly string[] = [HIDDEN_HEAD_PREFIX, CLASSIFIER_LAYER, 'conv_preds'];

/** The replaceable top: pooling, hidden dense layers with dropout, then one logit per class. */
export function head(options: HeadOptions): LayerSpec[] {
  const layers: LayerSpec[] = [SPATIAL_POOLING[options.pooling ?? 'avg']];
  const dropout = options.dropout ?? 0;
  (options.hidden ?? []).forEach((units, i) => {
    if (dropout > 0) layers.push({ type: 'dropout', rate: dropout });
    layers.push({ type: 'linear', name: `${HIDDEN_HEAD_PREFIX}dense_${i + 1}`, units }, { type: 'relu' });
  });
  if (dropout > 0) layers.push({ type: 'dropout', rate: dropout });
  layers.push({ type: 'linear', name: CLASSIFIER_LAYER, units: options.classes });
  return layers;
}

const VGG16_BLOCKS: readonly (readonly [number, number])[] = [
  [2, 64],
  [2, 128],
  [3, 256],
  [3, 512],
  [3, 512],
];

/** The convolutional base of VGG16 (Keras' notop: block1_conv1 ... block5_pool). */
export function vgg16Base(): LayerSpec[] {
  const layers: LayerSpec[] = [];
  VGG16_BLOCKS.forEach(([convs, filters], b) => {
    for (let c = 1; c <= convs; c++) {
      layers.push(
        { type: 'conv2d', name: `block${b + 1}_conv${c}`, filters, kernelSize: 3, padding: 'same' },
        { type: 'relu' },
      );
    }
    layers.push({ type: 'maxPool', poolSize: 2, strides: 2, padding: 'valid' });
  });
  return layers;
}

export function vgg16(options: ZooOptions): NetworkSpec {
  return {
    name: 'vgg16',
    input: input(options.inputSize, CAFFE_INPUT),
    classes: options.head.classes,
    layers: [...vgg16Base(), ...head(options.head)],
  };
}

/** MobileNet v1 (Keras 2.1 layout: 'same' padding, conv1 ... conv_pw_13, ReLU6). */
export function mobilenetV1Base(alpha = 1): LayerSpec[] {
  const width = (filters: number): number => Math.trunc(filters * alpha);
  const bnRelu = (name: string): LayerSpec[] => [
    { type: 'batchNorm', name, momentum: 0.99 },
    { type: 'relu6' },
  ];
  const first = width(32);
  const layers: LayerSpec[] = [
    {
      type: 'conv2d',
      name: 'conv1',
      filters: first,
      kernelSize: 3,
      strides: 2,
      padding: 'same',
      useBias: false,
    },
    ...bnRelu('conv1_bn'),
  ];
  const blocks: readonly (readonly [number, number])[] = [
    [64, 1],
    [128, 2],
    [128, 1],
    [256, 2],
    [256, 1],
    [512, 2],
    [512, 1],
    [512, 1],
    [512, 1],
    [512, 1],
    [512, 1],
    [1024, 2],
    [1024, 1],
  ];
  let channels = first;
  blocks.forEach(([filters, stride], i) => {
    const id = i + 1;
    const out = width(filters);
    layers.push(
      {
        type: 'conv2d',
        name: `conv_dw_${id}`,
        filters: channels,
        groups: channels,
        kernelSize: 3,
        strides: stride,
        padding: 'same',
        useBias: false,
      },
      ...bnRelu(`conv_dw_${id}_bn`),
      { type: 'conv2d', name: `conv_pw_${id}`, filters: out, kernelSize: 1, padding: 'same', useBias: false },
      ...bnRelu(`conv_pw_${id}_bn`),
    );
    channels = out;
  });
  return layers;
}

export function mobilenetV1(options: MobileNetOptions): NetworkSpec {
  return {
    name: 'mobilenet_v1',
    input: input(options.inputSize, TF_INPUT),
    classes: options.head.classes,
    layers: [...mobilenetV1Base(options.alpha ?? 1), ...head(options.head)],
  };
}

/** MobileNet v1 with Keras' own 1000-class ImageNet classifier (conv_preds, as a dense layer). */
export function mobilenetV1Imagenet(options: { inputSize?: number; alpha?: number } = {}): NetworkSpec {
  return {
    name: 'mobilenet_v1_imagenet',
    input: input(options.inputSize ?? 224, TF_INPUT),
    classes: 1000,
    layers: [
      ...mobilenetV1Base(options.alpha ?? 1),
      { type: 'globalAvgPool' },
      { type: 'dropout', rate: 1e-3 },
      { type: 'linear', name: 'conv_preds', units: 1000 },
    ],
  };
}

/** Keras' _make_divisible: channel counts rounded to multiples of 8. */
export function makeDivisible(value: number, divisor = 8): number {
  let rounded = Math.max(divisor, Math.floor((value + divisor / 2) / divisor) * divisor);
  if (rounded < 0.9 * value) rounded += divisor;
  return rounded;
}

/** Keras' correct_pad for a 3x3 stride-2 layer on a map of the given size. */
function correctPad(height: number, width: number): [number, number, number, number] {
  const adjust = (size: number): number => 1 - (size % 2);
  return [1 - adjust(height), 1, 1 - adjust(width), 1];
}

/** MobileNet v2 (Keras Applications layout: Conv1 ... block_16_project_BN, Conv_1, out_relu). */
export function mobilenetV2Base(alpha: number, inputSize: number): LayerSpec[] {
  const bn = (name: string): LayerSpec => ({ type: 'batchNorm', name, momentum: 0.999 });
  const first = makeDivisible(32 * alpha);
  let size = inputSize;
  const layers: LayerSpec[] = [
    { type: 'zeroPad', padding: correctPad(size, size) },
    {
      type: 'conv2d',
      name: 'Conv1',
      filters: first,
      kernelSize: 3,
      strides: 2,
      padding: 'valid',
      useBias: false,
    },
    bn('bn_Conv1'),
    { type: 'relu6' },
  ];
  size = Math.ceil(size / 2);
  const blocks: readonly (readonly [number, number, number])[] = [
    // filters, stride, expansion
    [16, 1, 1],
    [24, 2, 6],
    [24, 1, 6],
    [32, 2, 6],
    [32, 1, 6],
    [32, 1, 6],
    [64, 2, 6],
    [64, 1, 6],
    [64, 1, 6],
    [64, 1, 6],
    [96, 1, 6],
    [96, 1, 6],
    [96, 1, 6],
    [160, 2, 6],
    [160, 1, 6],
    [160, 1, 6],
    [320, 1, 6],
  ];
  let channels = first;
  blocks.forEach(([filters, stride, expansion], id) => {
    const out = makeDivisible(Math.trunc(filters * alpha));
    const prefix = id === 0 ? 'expanded_conv_' : `block_${id}_`;
    const body: LayerSpec[] = [];
    let inner = channels;
    if (id > 0) {
      inner = expansion * channels;
      body.push(
        {
          type: 'conv2d',
          name: `${prefix}expand`,
          filters: inner,
          kernelSize: 1,
          padding: 'same',
          useBias: false,
        },
        bn(`${prefix}expand_BN`),
        { type: 'relu6' },
      );
    }
    if (stride === 2) body.push({ type: 'zeroPad', padding: correctPad(size, size) });
    body.push(
      {
        type: 'conv2d',
        name: `${prefix}depthwise`,
        filters: inner,
        groups: inner,
        kernelSize: 3,
        strides: stride,
        padding: stride === 1 ? 'same' : 'valid',
        useBias: false,
      },
      bn(`${prefix}depthwise_BN`),
      { type: 'relu6' },
      {
        type: 'conv2d',
        name: `${prefix}project`,
        filters: out,
        kernelSize: 1,
        padding: 'same',
        useBias: false,
      },
      bn(`${prefix}project_BN`),
    );
    if (stride === 1 && channels === out) {
      layers.push({ type: 'residual', name: `${prefix}add`, body });
    } else {
      layers.push(...body);
    }
    if (stride === 2) size = Math.ceil(size / 2);
    channels = out;
  });
  const last = alpha > 1 ? makeDivisible(1280 * alpha) : 1280;
  layers.push(
    { type: 'conv2d', name: 'Conv_1', filters: last, kernelSize: 1, padding: 'valid', useBias: false },
    bn('Conv_1_bn'),
    { type: 'relu6' },
  );
  return layers;
}

export function mobilenetV2(options: MobileNetOptions): NetworkSpec {
  return {
    name: 'mobilenet_v2',
    input: input(options.inputSize, TF_INPUT),
    classes: options.head.classes,
    layers: [...mobilenetV2Base(options.alpha ?? 1, options.inputSize), ...head(options.head)],
  };
}

/** The stages of Keras' ResNet50 v1: bottleneck filters, blocks, stride of the first block. */
const RESNET50_STAGES: readonly (readonly [number, number, number])[] = [
  [64, 3, 1],
  [128, 4, 2],
  [256, 6, 2],
  [512, 3, 2],
];

/** The last stage of the ResNet50 base that a network keeps (res5 is the whole base). */
export type ResNetDepth = 'res3' | 'res4' | 'res5';

/**
 * ResNet50 v1 in Keras 2.2's layout (conv1, bn_conv1, res2a_branch2a ... res5c_branch2c): the
 * stride sits in the first 1x1 convolution of each stage's first block and its projection
 * shortcut (branch1), batch norms use epsilon 1e-3. `depth` cuts it after a stage, so a
 * frozen-feature recipe can take res4's finer features.
 */
export function resnet50Base(depth: ResNetDepth = 'res5'): LayerSpec[] {
  const bn = (name: string): LayerSpec => ({ type: 'batchNorm', name, momentum: 0.99, epsilon: 1e-3 });
  const conv = (name: string, filters: number, kernelSize: number, strides = 1): LayerSpec => ({
    type: 'conv2d',
    name,
    filters,
    kernelSize,
    strides,
    padding: kernelSize === 1 ? 'valid' : 'same',
  });
  const layers: LayerSpec[] = [
    { type: 'zeroPad', padding: [3, 3, 3, 3] },
    { type: 'conv2d', name: 'conv1', filters: 64, kernelSize: 7, strides: 2, padding: 'valid' },
    bn('bn_conv1'),
    { type: 'relu' },
    { type: 'zeroPad', padding: [1, 1, 1, 1] },
    { type: 'maxPool', poolSize: 3, strides: 2, padding: 'valid' },
  ];
  const last = Number(depth.slice(3));
  RESNET50_STAGES.forEach(([filters, blocks, stride], s) => {
    const stage = s + 2;
    if (stage > last) return;
    for (let b = 0; b < blocks; b++) {
      const id = `${stage}${String.fromCharCode(97 + b)}`;
      const first = b === 0;
      const body: LayerSpec[] = [
        conv(`res${id}_branch2a`, filters, 1, first ? stride : 1),
        bn(`bn${id}_branch2a`),
        { type: 'relu' },
        conv(`res${id}_branch2b`, filters, 3),
        bn(`bn${id}_branch2b`),
        { type: 'relu' },
        conv(`res${id}_branch2c`, filters * 4, 1),
        bn(`bn${id}_branch2c`),
      ];
      const shortcut = first
        ? [conv(`res${id}_branch1`, filters * 4, 1, stride), bn(`bn${id}_branch1`)]
        : undefined;
      layers.push(
        { type: 'residual', name: `res${id}`, body, ...(shortcut ? { shortcut } : {}) },
        { type: 'relu' },
      );
    }
  });
  return layers;
}

export interface ResNetOptions extends ZooOptions {
  depth?: ResNetDepth;
}

export function resnet50(options: ResNetOptions): NetworkSpec {
  return {
    name: 'resnet50',
    input: input(options.inputSize, CAFFE_INPUT),
    classes: options.head.classes,
    layers: [...resnet50Base(options.depth ?? 'res5'), ...head(options.head)],
  };
}

/** ResNet50 with Keras' own 1000-class ImageNet classifier (avg_pool, fc1000). */
export function resnet50Imagenet(options: { inputSize?: number } = {}): NetworkSpec {
  return {
    name: 'resnet50_imagenet',
    input: input(options.inputSize ?? 224, CAFFE_INPUT),
    classes: 1000,
    layers: [
      ...resnet50Base('res5'),
      { type: 'globalAvgPool' },
      { type: 'linear', name: 'fc1000', units: 1000 },
    ],
  };
}

/**
 * A small CNN trained from scratch: a fast baseline. Conv-BN-ReLU-pool blocks, then the head.
 */
export function smallCnn(options: ZooOptions & { filters?: readonly number[] }): NetworkSpec {
  const layers: LayerSpec[] = [];
  (options.filters ?? [32, 64, 128]).forEach((filters, i) => {
    const id = i + 1;
    layers.push(
      { type: 'conv2d', name: `conv${id}`, filters, kernelSize: 3, padding: 'same', useBias: false },
      // Running statistics that settle within one short epoch: this net starts from scratch.
      { type: 'batchNorm', name: `conv${id}_bn`, momentum: 0.9 },
      { type: 'relu' },
      { type: 'maxPool', poolSize: 2, padding: 'valid' },
    );
  });
  return {
    name: 'small_cnn',
    input: input(options.inputSize, { channelOrder: 'rgb', mean: [127.5, 127.5, 127.5], std: [64, 64, 64] }),
    classes: options.head.classes,
    layers: [...layers, ...head(options.head)],
  };
}

export const ARCHITECTURES = ['vgg16', 'mobilenet_v1', 'mobilenet_v2', 'resnet50', 'small_cnn'] as const;
export type Architecture = (typeof ARCHITECTURES)[number];

/** A zoo network by name. */
export function buildSpec(
  architecture: Architecture,
  options: MobileNetOptions & ResNetOptions,
): NetworkSpec {
  switch (architecture) {
    case 'vgg16':
      return vgg16(options);
    case 'mobilenet_v1':
      return mobilenetV1(options);
    case 'mobilenet_v2':
      return mobilenetV2(options);
    case 'resnet50':
      return resnet50(options);
    case 'small_cnn':
      return smallCnn(options);
    default:
      throw new EngineInputError(
        `unknown architecture '${String(architecture)}' (${ARCHITECTURES.join(', ')})`,
      );
  }
}

/** What a network's name gets without its classifier (`resnet50` -> `resnet50_features`). */
export const FEATURES_SUFFIX = '_features';

/** The network without its classifier: the pooled features are its output. */
export function featureSpec(spec: NetworkSpec): NetworkSpec {
  const layers = spec.layers.filter((l) => l.type !== 'dropout');
  const last = layers[layers.length - 1];
  if (!last || last.type !== 'linear' || last.name !== CLASSIFIER_LAYER)
    throw new EngineInputError(`a frozen base needs a network that ends in its '${CLASSIFIER_LAYER}' layer`);
  const body = layers.slice(0, -1);
  if (body.some((l) => l.type === 'linear'))
    throw new EngineInputError('a probe fits one linear head: give the model no hidden head layers');
  const features = { ...spec, name: `${spec.name}${FEATURES_SUFFIX}`, layers: body };
  const shape = outputShapeOf(features);
  if (shape.length !== 1)
    throw new EngineInputError('a frozen base needs pooled features: give the model an avg or flatten head');
  return { ...features, classes: shape[0] ?? 0 };
}
