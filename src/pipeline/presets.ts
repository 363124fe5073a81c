/**
 * Presets: whole recipes as data (case grouping, split, preprocessing, training), which `run`
 * carries out and a config file can adjust. Scales are relative to the original 1388x1040
 * release, so a recipe means the same tissue size on the original and the downscaled copy.
 */
import type { PrepareRecipeInput } from '../prepare/recipe.js';
import type { SplitConfig } from '../acquire/split.js';
import type { TrainConfigInput } from '../train/config.js';

export interface Preset {
  name: string;
  description: string;
  /** Group (patient) rule for `data import`: 'auto' takes the patient accession from sj- names. */
  groupBy: string;
  split: SplitConfig;
  prepare: PrepareRecipeInput;
  /** Without name and store: run fills them in. 'weights:ID' names known pretrained weights. */
  train: Omit<TrainConfigInput, 'name' | 'store'>;
  /** The training may start from random weights when the pretrained file is missing. */
  allowMissingPretrained?: boolean;
  /** After cross-validation, train the model to deploy on every development image (default true). */
  final?: boolean;
}

/** Moderate stain and colour jitter: the staining of unseen cases differs more than any one case's. */
const STAIN_JITTER = {
  hedScale: 0.05,
  hedShift: 0.025,
  brightness: 0.1,
  contrast: 0.1,
  saturation: 0.1,
  hue: 0.02,
};

/**
 * Five folds of patients: every development image is predicted once by a model that never saw
 * its patient, then the final model trains on all of them (validation carved from the training
 * patients of each fold, for the recipes that stop early or keep their best epoch).
 */
const byPatient: SplitConfig = { kind: 'kfold', folds: 5, validationFraction: 0.2, seed: 1 };

/**
 * What the frozen-feature presets share: ImageNet ResNet50 cut after res4, 96 px patches at 1.0667
 * um/px (0.3x) with half a patch of overlap, no normalisation, five folds of patients.
 */
const resnet50Res4Features = {
  groupBy: 'auto',
  split: { kind: 'kfold', folds: 5, validationFraction: 0, seed: 1 },
  prepare: { normalisation: 'none', mpp: 1.0667, patchSize: 96, stride: 48 },
  train: {
    architecture: 'resnet50',
    depth: 'res4',
    head: { pooling: 'avg', hidden: [], dropout: 0 },
    pretrained: 'weights:resnet50',
    augment: { flip: false, rotate90: false, stain: {} },
  },
} as const satisfies Omit<Preset, 'name' | 'description'>;

export const PRESETS: Record<string, Preset> = {
  'resnet50-probe': {
    name: 'resnet50-probe',
    description:
      'ImageNet ResNet50 (Keras weights) cut after res4, frozen; 96x96 patches at 0.3x scale; each image the mean of its ' +
      "patches' pooled features; an L2-regularised logistic regression on those image vectors (seconds); mean-logit vote; " +
      'temperature and abstention threshold from patient-grouped cross-validation',
    ...resnet50Res4Features,
    train: { ...resnet50Res4Features.train, method: 'probe', probe: { l2: 0.01, views: 1 }, vote: 'logit' },
  },
  'resnet50-mil': {
    name: 'resnet50-mil',
    description:
      "The main preset's frozen ResNet50 res4 features of every 96x96 patch at 0.3x scale, each image a bag of them; a " +
      'gated-attention MIL head (Ilse et al. 2018: projection 256, attention 128, dropout 0.25) trained in the engine by AdamW ' +
      'on the bags; the image answered by its attention-pooled bag, the weights its heatmap',
    ...resnet50Res4Features,
    train: { ...resnet50Res4Features.train, method: 'mil', mil: { pooling: 'attention' } },
  },
  'knime-vgg16': {
    name: 'knime-vgg16',
    description:
      "The KNIME blog's recipe: 64x64 patches at the original scale, VGG16 with Keras ImageNet weights, the top " +
      'replaced (flatten, dense 256, dropout, softmax), the base frozen first, then block 5 fine-tuned; majority vote',
    groupBy: 'auto',
    split: byPatient,
    // KNIME's geometry is the original scale: on the 0.3x development copy that is 3.33x enlargement,
    // stated so that the package's predict takes the same images (image/resampling.ts).
    prepare: { normalisation: 'percentile', mpp: 0.32, patchSize: 64, stride: 64, maxUpsampling: 3.4 },
    train: {
      architecture: 'vgg16',
      head: { pooling: 'flatten', hidden: [256], dropout: 0.5 },
      pretrained: 'weights:vgg16',
      phases: [
        { epochs: 1, trainable: 'head', optimizer: 'adam', learningRate: 1e-3 },
        {
          epochs: 2,
          trainable: ['block5_', 'head_', 'predictions'],
          optimizer: 'sgd',
          learningRate: 1e-4,
          momentum: 0.9,
        },
      ],
      batchSize: 32,
      patchesPerEpoch: 6000,
      balance: 'sampling',
      augment: { flip: true, rotate90: true, stain: {} },
      patience: 0,
      vote: 'majority',
    },
    allowMissingPretrained: true,
  },
  'mobilenet-v2': {
    name: 'mobilenet-v2',
    description:
      'ImageNet MobileNetV2 (alpha 0.35) on 96x96 patches at 0.3x scale (320x320 px of the original each), Reinhard ' +
      'normalisation to the average colour of the training images, HED stain jitter, the classifier trained on frozen features first, then everything fine-tuned ' +
      'with batch norms in inference mode',
    groupBy: 'auto',
    split: byPatient,
    prepare: {
      normalisation: 'reinhard',
      reference: 'dataset',
      mpp: 1.0667,
      patchSize: 96,
      stride: 48,
    },
    train: {
      architecture: 'mobilenet_v2',
      alpha: 0.35,
      head: { pooling: 'avg', hidden: [], dropout: 0.2 },
      pretrained: 'weights:mobilenet_v2_0.35',
      phases: [
        { epochs: 3, trainable: 'head', optimizer: 'adam', learningRate: 2e-3 },
        { epochs: 5, trainable: 'all', optimizer: 'adam', learningRate: 1e-4, warmupEpochs: 0.3 },
      ],
      batchSize: 32,
      balance: 'sampling',
      augment: { flip: true, rotate90: true, stain: STAIN_JITTER },
      batchNorm: 'frozen',
      patience: 0,
      vote: 'majority',
    },
  },
  'small-cnn': {
    name: 'small-cnn',
    description:
      'A small CNN trained from scratch on 32x32 patches at 0.3x scale, on the haematoxylin (nuclear) stain alone: the fast baseline',
    groupBy: 'auto',
    split: byPatient,
    prepare: { normalisation: 'haematoxylin', mpp: 1.0667, patchSize: 32, stride: 32 },
    train: {
      architecture: 'small_cnn',
      head: { pooling: 'avg', hidden: [64], dropout: 0.3 },
      pretrained: null,
      phases: [{ epochs: 8, optimizer: 'adam', learningRate: 3e-3, warmupEpochs: 0.2 }],
      batchSize: 64,
      balance: 'sampling',
      augment: { flip: true, rotate90: true, stain: STAIN_JITTER },
      patience: 0,
      vote: 'majority',
    },
  },
};

export function presetNames(): string[] {
  return Object.keys(PRESETS);
}
