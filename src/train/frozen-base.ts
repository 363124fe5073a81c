/**
 * The frozen-base recipes end to end (`method: probe` and `method: mil`): a pretrained base (a zoo
 * network or a user's ONNX encoder) whose weights never change, patch features of the training
 * (and validation) images, a head fitted on them, one package. Seconds to minutes, so nothing to
 * resume. Each method is one head fitter; the frame around it (the base, the images, the
 * progress, the package written and checked) is written once.
 */
import { existsSync } from 'node:fs';

import { ConfigError } from '../errors.js';
import { Network, type NamedTensor } from '../engine/network.js';
import {
  encoderFeatureSpec,
  encoderGeometryMismatch,
  encoderHeadSpec,
  OnnxEncoder,
  type EncoderConfig,
} from '../engine/onnx-encoder.js';
import type { NetworkSpec } from '../engine/spec.js';
import { loadPretrained, readPretrained, type PretrainedReport } from '../engine/weights/load.js';
import { featureSpec } from '../engine/zoo.js';
import { mppOf, type PreprocessConfig } from '../image/preprocess.js';
import {
  ENCODER_FILE,
  MIL_HEAD_FILE,
  packagedEncoder,
  writePackage,
  type ModelManifest,
  type PackagedMilHead,
} from '../model/package.js';
import { BAG_POOLING, type BagPooling, type VoteRule } from '../engine/pooling.js';
import { precisionOf } from '../engine/precision.js';
import type { PatchStore, StoredImage } from '../prepare/patch-store.js';
import { modelDirFor, type Workspace } from '../workspace.js';
import { fitMil } from './mil.js';
import { encoderFeatures, fitProbe, zooFeatures, type ProbeFeatures, type ProbeOptions } from './probe.js';
import {
  learnedFrom,
  packageBasics,
  storeSource,
  type PackageSource,
  type RunConfig,
  type TrainOptions,
  type TrainResult,
} from './run.js';
import { withTrainingReference } from './training-reference.js';

/** The frozen base a head is fitted on, and what the package keeps of it. */
export interface FrozenBase {
  features: ProbeFeatures;
  /** The package's network: the zoo network, or the head alone over an encoder's features. */
  spec: NetworkSpec;
  /** The network each patch goes through for a multiple-instance head: the zoo base without its classifier, or the identity over an encoder's features. */
  featureSpec: NetworkSpec;
  /** The base's tensors the package keeps (none for an encoder: it is a file of its own). */
  tensors: NamedTensor[];
  encoder?: { file: string; config: EncoderConfig; sha256: string; dims: number };
  pretrained: PretrainedReport | null;
}

/** One frozen-base package: everything a head fitter and the package writer share. */
export interface FrozenBaseRun {
  workspace: Workspace;
  config: RunConfig;
  /** What the package learnt from: a patch store, or slides. */
  source: PackageSource;
  base: FrozenBase;
  started: number;
}

/** What a method's head fitter hands the package writer. */
export interface FittedHead {
  /** The package's main network and its tensors. */
  spec: NetworkSpec;
  tensors: NamedTensor[];
  /** The package's vote rule when the method decides it rather than the recipe. */
  vote?: VoteRule;
  mil?: PackagedMilHead & { tensors: NamedTensor[] };
  /** The method's own record in the manifest's training section. */
  training: Record<string, unknown>;
}

/** A probe's package: the base with the fitted linear head as its classifier (over an encoder: the head alone). */
export function probePackageHead(
  base: FrozenBase,
  head: NamedTensor[],
  training: Record<string, unknown>,
): FittedHead {
  return { spec: base.spec, tensors: [...base.tensors, ...head], training };
}

/** A multiple-instance package: the per-patch feature network, and the head over bags in a file of its own. */
export function milPackageHead(
  base: FrozenBase,
  pooling: BagPooling,
  head: { spec: NetworkSpec; tensors: NamedTensor[] },
  training: Record<string, unknown>,
): FittedHead {
  return {
    spec: base.featureSpec,
    tensors: base.tensors,
    vote: BAG_POOLING[pooling].vote,
    mil: { pooling, head: head.spec, file: MIL_HEAD_FILE, tensors: head.tensors },
    training,
  };
}

type HeadFitter = (
  run: FrozenBaseRun & { store: PatchStore; fingerprint: string },
  images: StoredImage[],
  options: ProbeOptions,
) => Promise<FittedHead>;

const fitProbeHead: HeadFitter = async (run, images, options) => {
  const { workspace, config, store, base, fingerprint } = run;
  const fitted = await fitProbe(workspace, store, base.features, images, options);
  return probePackageHead(base, fitted.head, {
    fingerprint,
    probe: { ...config.probe, images: fitted.images, rows: fitted.rows, dims: fitted.dims },
    trainingAccuracy: fitted.trainingAccuracy,
    featureSeconds: fitted.seconds,
    featureEngine: fitted.engine,
  });
};

const fitMilHead: HeadFitter = async (run, images, options) => {
  const { workspace, config, store, base, fingerprint } = run;
  const fitted = await fitMil(workspace, store, base.features, images, { ...options, mil: config.mil });
  return milPackageHead(base, config.mil.pooling, fitted, {
    fingerprint,
    mil: { ...config.mil, images: fitted.images, bags: fitted.bags, dims: fitted.dims },
    trainingAccuracy: fitted.trainingAccuracy,
    finalLoss: fitted.finalLoss,
    featureSeconds: fitted.seconds,
    featureEngine: fitted.engine,
  });
};

const HEAD_FITTERS: Record<'probe' | 'mil', HeadFitter> = { probe: fitProbeHead, mil: fitMilHead };

export type FrozenBaseRecipe = RunConfig & { method: keyof typeof HEAD_FITTERS };

/** Whether the recipe keeps its base frozen, so that this module trains it rather than the fine-tune loop. */
export function isFrozenBaseRecipe(config: RunConfig): config is FrozenBaseRecipe {
  return Object.hasOwn(HEAD_FITTERS, config.method);
}

/** Trains a frozen-base recipe into its package: the base, the method's head, the package checked and written. */
export async function trainFrozenBasePackage(
  request: {
    workspace: Workspace;
    config: FrozenBaseRecipe;
    store: PatchStore;
    spec: NetworkSpec;
    fingerprint: string;
    started: number;
  },
  options: TrainOptions,
): Promise<TrainResult> {
  const { config, store, spec } = request;
  const base = await openFrozenBase(config, spec, store.manifest.preprocess, store.manifest.classes, 'store');
  const images = learnedFrom(store);
  let result: TrainResult;
  try {
    const run = { ...request, source: storeSource(config, store), base };
    const fit = HEAD_FITTERS[config.method];
    result = await writeFrozenBasePackage(run, await fit(run, images, frozenBaseOptions(config, options)));
  } finally {
    await base.features.runner.close();
  }
  return withTrainingReference(result, request.workspace, images, options);
}

/**
 * The recipe's frozen base over patches of this preprocessing (a patch store's, or the tiles of
 * slides): its zoo network with pretrained weights, or its ONNX encoder (checked against the
 * patches' size and scale). Its runner is the caller's to close.
 */
export async function openFrozenBase(
  config: RunConfig,
  spec: NetworkSpec,
  preprocess: PreprocessConfig,
  classes: readonly string[],
  source: 'store' | 'recipe',
): Promise<FrozenBase> {
  return config.encoder
    ? await encoderBase(config.encoder, preprocess, classes.length, source)
    : await zooBase(config, spec);
}

async function zooBase(config: RunConfig, spec: NetworkSpec): Promise<FrozenBase> {
  if (!config.pretrained || !existsSync(config.pretrained))
    throw new ConfigError(
      `method: ${config.method} keeps its base frozen, so it needs the pretrained weights ${config.pretrained ?? '(none given)'} (pathotype weights fetch ${config.architecture})`,
    );
  const base = featureSpec(spec);
  const network = await Network.create(base);
  const pretrained = await loadPretrained(
    network,
    await readPretrained(config.pretrained),
    config.pretrained,
  );
  const features = await zooFeatures(network, {
    pretrained: config.pretrained,
    bf16: config.bf16,
    engine: config.probe.engine,
  });
  return { features, spec, featureSpec: base, tensors: await network.exportTensors(), pretrained };
}

/** A user's ONNX encoder, checked against the patches: they must be the encoder's input. */
async function encoderBase(
  config: EncoderConfig,
  preprocess: PreprocessConfig,
  classes: number,
  source: 'store' | 'recipe',
): Promise<FrozenBase> {
  const mismatch = encoderGeometryMismatch(config, preprocess.tiles.patchSize, mppOf(preprocess));
  if (mismatch) throw new ConfigError(mismatch.replace('the patches are', `the ${source}'s are`));
  const encoder = await OnnxEncoder.open(config);
  return {
    features: encoderFeatures(encoder),
    spec: encoderHeadSpec(encoder.dims, classes),
    featureSpec: encoderFeatureSpec(encoder.dims),
    tensors: [],
    encoder: { file: config.onnx, config, sha256: encoder.sha256, dims: encoder.dims },
    pretrained: null,
  };
}

/** What a frozen-base recipe's feature pass takes from the config; its progress reported as the one epoch. */
function frozenBaseOptions(config: RunConfig, options: TrainOptions): ProbeOptions {
  return {
    probe: config.probe,
    stain: config.augment.stain,
    bf16: config.bf16,
    seed: config.seed,
    onProgress: (done, total) =>
      options.onProgress?.({
        pass: 'features',
        epoch: 1,
        epochs: 1,
        phase: 1,
        batch: done,
        batches: total,
        loss: 0,
        accuracy: 0,
        learningRate: 0,
        patchesPerSecond: 0,
        etaSeconds: 0,
      }),
  };
}

/** Writes a frozen-base package, after checking it loads as the predictor will load it. */
export async function writeFrozenBasePackage(run: FrozenBaseRun, fitted: FittedHead): Promise<TrainResult> {
  const { workspace, config, source, base, started } = run;
  const packageDir = modelDirFor(workspace, config.name);
  const mil = fitted.mil
    ? { pooling: fitted.mil.pooling, head: fitted.mil.head, file: fitted.mil.file }
    : undefined;
  const manifest: ModelManifest = {
    ...packageBasics(packageDir, config, fitted.spec, source),
    ...(fitted.vote ? { vote: fitted.vote } : {}),
    ...(base.encoder ? { encoder: packagedEncoder(base.encoder) } : {}),
    ...(mil ? { mil } : {}),
    training: {
      ...config,
      precision: precisionOf(config.bf16),
      ...fitted.training,
      pretrainedLoaded: base.pretrained?.loaded ?? 0,
    },
    history: [],
    metrics: {},
  };
  const check = await Network.create(fitted.spec);
  await check.importTensors(fitted.tensors);
  if (fitted.mil) await (await Network.create(fitted.mil.head)).importTensors(fitted.mil.tensors);
  await writePackage(
    packageDir,
    manifest,
    fitted.tensors,
    base.encoder ? [{ name: ENCODER_FILE, source: base.encoder.file }] : [],
    fitted.mil ? [{ name: fitted.mil.file, tensors: fitted.mil.tensors }] : [],
  );
  return {
    packageDir,
    manifest,
    resumedFrom: 0,
    stoppedEarly: false,
    pretrained: base.pretrained,
    seconds: (performance.now() - started) / 1000,
  };
}
