/**
 * The training configuration: plain data, validated against a JSON schema (ajv, as Fastify
 * uses), with defaults filled in. Presets are such data; a config file or flags override them;
 * the resolved config is saved with the run and the model package.
 */
import type { Bf16Setting } from '../engine/precision.js';
import { merge, schemaValidator } from '../config.js';
import { ConfigError } from '../errors.js';
import type { StainAugmentOptions } from '../image/augment.js';
import { ARCHITECTURES, type Architecture, type ResNetDepth } from '../engine/zoo.js';
import type { ProbeConfig } from './probe.js';
import type { LearntFromSlides } from '../model/package.js';
import type { MilConfig } from './mil.js';
import { MIN_USABLE_TILES } from './slide-bags.js';
import { INFERENCE_ENGINES } from '../engine/inference-engine.js';
import { IMAGENET_MEAN, IMAGENET_STD, type EncoderConfig } from '../engine/onnx-encoder.js';
import {
  BAG_POOLINGS,
  SPATIAL_POOLINGS,
  VOTE_RULES,
  type SpatialPooling,
  type VoteRule,
} from '../engine/pooling.js';

export interface PhaseConfig {
  epochs: number;
  /** 'all', 'head' (the classifier only), or layer-name prefixes to train (the rest frozen). */
  trainable: 'all' | 'head' | string[];
  optimizer: 'sgd' | 'adam' | 'adamw';
  learningRate: number;
  momentum: number;
  weightDecay: number;
  warmupEpochs: number;
  schedule: 'cosine' | 'constant' | 'step';
  /** 'step' schedule: multiply the rate by `gamma` every `stepEpochs`. */
  stepEpochs: number;
  gamma: number;
}

/** How slides become bags: one bag per slide, or a patient's slides pooled into one (Slideflow's aggregation_level). */
export const AGGREGATIONS = [
  'slide',
  'patient',
] as const satisfies readonly LearntFromSlides['aggregation'][];
export type Aggregation = (typeof AGGREGATIONS)[number];

/** The recipe's `train.slides` section: learning from whole slides (train/slide-training.ts). */
export interface SlideTrainingConfig {
  aggregation: Aggregation;
  /** Tiles drawn at random from a bag each time it trains (at most); a bag answers whole. */
  maxTilesPerBag: number;
  /** A slide with fewer usable tiles is left out, with its reason. */
  minUsableTiles: number;
  /** The classes the recipe learns, in this order: a manifest label outside them is refused. Null: the manifest's labels. */
  classes: string[] | null;
}

export interface TrainConfig {
  name: string;
  store: string;
  architecture: Architecture;
  alpha: number;
  /** ResNet50: the last stage kept (res4's features are finer than res5's). */
  depth: ResNetDepth;
  /**
   * 'finetune': train the network by gradient steps, phase by phase; 'probe': keep the pretrained
   * base frozen and fit a regularised linear head on image-pooled features in seconds; 'mil':
   * keep it frozen and train an attention-pooling head on each image's bag of patch features.
   */
  method: 'finetune' | 'probe' | 'mil';
  probe: ProbeConfig;
  /** 'mil': a multiple-instance head over each image's patch features from the frozen base (train/mil.ts). */
  mil: MilConfig;
  /** Learning from whole slides (`run --data MANIFEST.csv`; train/slide-training.ts): a frozen-base recipe over each slide's tile features. */
  slides: SlideTrainingConfig;
  /**
   * An ONNX encoder instead of a zoo architecture for the frozen base of a probe (engine/onnx-encoder.ts):
   * its patches must be its input size at its microns per pixel. Null: the zoo's `architecture`.
   */
  encoder: EncoderConfig | null;
  head: { pooling: SpatialPooling; hidden: number[]; dropout: number };
  /** Keras HDF5 file or TensorFlow.js model folder with ImageNet weights; null trains from scratch. */
  pretrained: string | null;
  phases: PhaseConfig[];
  batchSize: number;
  /** Patches drawn per epoch (at most); the whole training partition when 0. */
  patchesPerEpoch: number;
  balance: 'none' | 'sampling' | 'weights';
  augment: { flip: boolean; rotate90: boolean; stain: StainAugmentOptions };
  labelSmoothing: number;
  /** 'frozen': batch norms keep their (ImageNet) running statistics while fine-tuning; 'train': they learn them. */
  batchNorm: 'frozen' | 'train';
  /** Stop when the image-level validation accuracy has not improved for this many epochs (0: never). */
  patience: number;
  vote: VoteRule;
  /** bfloat16 autocast: 'auto' where the CPU has native bf16 (engine/precision.ts). */
  bf16: Bf16Setting;
  seed: number;
  threads: number;
}

/** A training config as written by hand: everything but the architecture and phases may be left out. */
export type TrainConfigInput = Partial<
  Omit<TrainConfig, 'phases' | 'augment' | 'head' | 'probe' | 'mil' | 'slides' | 'encoder'>
> &
  Pick<TrainConfig, 'architecture'> & {
    encoder?: (Omit<EncoderConfig, 'mean' | 'std'> & Partial<Pick<EncoderConfig, 'mean' | 'std'>>) | null;
    phases?: (Partial<PhaseConfig> & Pick<PhaseConfig, 'epochs'>)[];
    augment?: Partial<TrainConfig['augment']>;
    head?: Partial<TrainConfig['head']>;
    probe?: Partial<ProbeConfig>;
    mil?: Partial<MilConfig>;
    slides?: Partial<SlideTrainingConfig>;
  };

const PHASE_DEFAULTS: Omit<PhaseConfig, 'epochs'> = {
  trainable: 'all',
  optimizer: 'adam',
  learningRate: 1e-3,
  momentum: 0.9,
  weightDecay: 0,
  warmupEpochs: 0,
  schedule: 'cosine',
  stepEpochs: 5,
  gamma: 0.1,
};

export const TRAIN_DEFAULTS: Omit<TrainConfig, 'name' | 'store' | 'architecture' | 'phases'> & {
  phases: Partial<PhaseConfig>[];
} = {
  alpha: 1,
  depth: 'res5',
  method: 'finetune',
  probe: { l2: 0.01, views: 1, engine: 'auto' },
  // CLAM's optimiser settings (Adam-type, 2e-4, dropout 0.25), its layers halved for 24 patients.
  mil: {
    pooling: 'attention',
    projection: 256,
    attention: 128,
    dropout: 0.25,
    epochs: 30,
    learningRate: 2e-4,
    weightDecay: 1e-5,
    views: 1,
  },
  // Slideflow's MIL bag size (512 tiles sampled per bag and step); CLAM trains on whole bags.
  slides: { aggregation: 'slide', maxTilesPerBag: 512, minUsableTiles: MIN_USABLE_TILES, classes: null },
  encoder: null,
  head: { pooling: 'avg', hidden: [], dropout: 0 },
  pretrained: null,
  phases: [{ epochs: 10 }],
  batchSize: 32,
  patchesPerEpoch: 0,
  balance: 'sampling',
  augment: { flip: true, rotate90: true, stain: {} },
  labelSmoothing: 0,
  batchNorm: 'train',
  patience: 0,
  vote: 'majority',
  bf16: 'auto',
  seed: 1,
  threads: 0,
};

const strength = { type: 'number', minimum: 0, maximum: 1 };

/** The training section's schema; `run` checks a preset's `train` against it without name and store. */
export const TRAIN_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['name', 'store', 'architecture'],
  properties: {
    name: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
    store: { type: 'string', pattern: '^[A-Za-z0-9][A-Za-z0-9_.-]*$' },
    architecture: { enum: ARCHITECTURES },
    alpha: { type: 'number', exclusiveMinimum: 0, maximum: 4 },
    depth: { enum: ['res3', 'res4', 'res5'] },
    method: { enum: ['finetune', 'probe', 'mil'] },
    encoder: {
      anyOf: [
        { type: 'null' },
        {
          type: 'object',
          additionalProperties: false,
          required: ['onnx', 'inputSize', 'mpp'],
          properties: {
            onnx: { type: 'string', minLength: 1 },
            inputSize: { type: 'integer', minimum: 8, maximum: 4096 },
            mpp: { type: 'number', minimum: 0.02, maximum: 100 },
            mean: { type: 'array', items: { type: 'number' }, minItems: 3, maxItems: 3 },
            std: { type: 'array', items: { type: 'number', exclusiveMinimum: 0 }, minItems: 3, maxItems: 3 },
            output: { type: 'string', minLength: 1 },
          },
        },
      ],
    },
    probe: {
      type: 'object',
      additionalProperties: false,
      properties: {
        l2: { type: 'number', minimum: 0, maximum: 1000 },
        views: { type: 'integer', minimum: 1, maximum: 16 },
        engine: { enum: INFERENCE_ENGINES },
      },
    },
    mil: {
      type: 'object',
      additionalProperties: false,
      properties: {
        pooling: { enum: BAG_POOLINGS },
        projection: { type: 'integer', minimum: 1, maximum: 8192 },
        attention: { type: 'integer', minimum: 1, maximum: 8192 },
        dropout: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
        epochs: { type: 'integer', minimum: 1, maximum: 1000 },
        learningRate: { type: 'number', exclusiveMinimum: 0, maximum: 10 },
        weightDecay: { type: 'number', minimum: 0, maximum: 1 },
        views: { type: 'integer', minimum: 1, maximum: 16 },
      },
    },
    slides: {
      type: 'object',
      additionalProperties: false,
      properties: {
        aggregation: { enum: AGGREGATIONS },
        maxTilesPerBag: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        minUsableTiles: { type: 'integer', minimum: 1, maximum: 1_000_000 },
        classes: {
          anyOf: [
            { type: 'null' },
            { type: 'array', items: { type: 'string', minLength: 1 }, minItems: 2, uniqueItems: true },
          ],
        },
      },
    },
    head: {
      type: 'object',
      additionalProperties: false,
      properties: {
        pooling: { enum: SPATIAL_POOLINGS },
        hidden: { type: 'array', items: { type: 'integer', minimum: 1, maximum: 65536 }, maxItems: 4 },
        dropout: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
      },
    },
    pretrained: { type: ['string', 'null'] },
    phases: {
      type: 'array',
      minItems: 1,
      maxItems: 8,
      items: {
        type: 'object',
        additionalProperties: false,
        required: ['epochs'],
        properties: {
          epochs: { type: 'integer', minimum: 1, maximum: 1000 },
          trainable: {
            anyOf: [{ enum: ['all', 'head'] }, { type: 'array', items: { type: 'string' }, minItems: 1 }],
          },
          optimizer: { enum: ['sgd', 'adam', 'adamw'] },
          learningRate: { type: 'number', exclusiveMinimum: 0, maximum: 10 },
          momentum: { type: 'number', minimum: 0, maximum: 1 },
          weightDecay: { type: 'number', minimum: 0, maximum: 1 },
          warmupEpochs: { type: 'number', minimum: 0 },
          schedule: { enum: ['cosine', 'constant', 'step'] },
          stepEpochs: { type: 'integer', minimum: 1 },
          gamma: { type: 'number', exclusiveMinimum: 0, maximum: 1 },
        },
      },
    },
    batchSize: { type: 'integer', minimum: 1, maximum: 4096 },
    patchesPerEpoch: { type: 'integer', minimum: 0 },
    balance: { enum: ['none', 'sampling', 'weights'] },
    augment: {
      type: 'object',
      additionalProperties: false,
      properties: {
        flip: { type: 'boolean' },
        rotate90: { type: 'boolean' },
        stain: {
          type: 'object',
          additionalProperties: false,
          properties: {
            hedScale: strength,
            hedShift: strength,
            brightness: strength,
            contrast: strength,
            saturation: strength,
            hue: strength,
          },
        },
      },
    },
    labelSmoothing: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    batchNorm: { enum: ['frozen', 'train'] },
    patience: { type: 'integer', minimum: 0 },
    vote: { enum: VOTE_RULES },
    bf16: { enum: [true, false, 'auto'] },
    seed: { type: 'integer', minimum: 0 },
    threads: { type: 'integer', minimum: 0, maximum: 256 },
  },
} as const;

const validate: (input: unknown) => asserts input is TrainConfigInput = schemaValidator(
  TRAIN_SCHEMA,
  'training config',
);

/** Validates a (partial) config and fills in every default. */
export function resolveTrainConfig(input: unknown): TrainConfig {
  validate(input);
  const merged = merge(TRAIN_DEFAULTS, input) as unknown as TrainConfig;
  if (merged.encoder) {
    const given: Partial<EncoderConfig> = merged.encoder;
    merged.encoder = { ...merged.encoder, mean: given.mean ?? IMAGENET_MEAN, std: given.std ?? IMAGENET_STD };
    if (merged.method === 'finetune')
      throw new ConfigError("an ONNX encoder is a frozen base: give it method: 'probe' or 'mil'");
  }
  merged.phases = ((input as { phases?: Partial<PhaseConfig>[] }).phases ?? TRAIN_DEFAULTS.phases).map(
    (p) => merge(PHASE_DEFAULTS, p) as PhaseConfig,
  );
  return merged;
}
