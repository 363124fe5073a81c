/**
 * The predictor shared by predict and serve (evaluate votes on a store's patches, made by the
 * same preprocessing, with the same vote and patch outputs): preprocess an image exactly as training
 * did (the package's normalisation, scale and tiling), run its patches through the network in
 * batches shared between images, and vote.
 */
import { PathotypeError } from '../errors.js';
import type { Network } from '../engine/network.js';
import { preprocessImage, type PreprocessedImage } from '../image/preprocess.js';
import { probeImage, type ImageProbe, type RgbImage } from '../image/image-io.js';
import { cutCells, prepareRegion, sizeAtScale } from '../image/preprocess.js';
import { LIMITS } from '../limits.js';
import { inferScale } from '../image/scale.js';
import { checkEnlargement, maxUpsamplingOf } from '../image/resampling.js';
import { gridFor, type Grid } from '../image/tiling.js';
import { resolveBf16, type Bf16Setting } from '../engine/precision.js';
import type { ModelManifest } from '../model/package.js';
import { addonRunner, type InferenceEngineSetting, type PatchRunner } from '../engine/inference-engine.js';
import { loadPackageRunner } from '../model/package-runner.js';
import { refuseFailedField } from '../image/input-checks.js';
import { batchedPatchOutputs, type PatchOutputs } from './patch-outputs.js';
import { rounded, roundedWeight, verdictOf, type Verdict } from './verdict.js';
import { vote, type ImageVote } from './vote.js';
import type { VoteRule } from '../engine/pooling.js';
import { atypicalityOf, readReference, type Atypicality, type AtypicalityReference } from './atypicality.js';
import { inputMeasures, meanFeatures, type InputMeasures } from './image-features.js';
import type { FeatureSums } from './patch-outputs.js';

/** Patches per inference batch: large enough to keep oneDNN busy, small enough for any image. */
export const DEFAULT_BATCH_SIZE = 64;

export interface ImageInput {
  source: string | Buffer;
  /** Pixel scale relative to the original release; inferred from the size when absent. */
  scale?: number | null;
  name?: string;
  /** The header already read (an upload is probed once, before it is queued). */
  probe?: ImageProbe;
}

// A type, not an interface: the API's response schema types take it as an open record.
export type PatchGrid = {
  cols: number;
  rows: number;
  patchSize: number;
  stride: number;
  /** Size of the image the grid was cut from (at the model's scale). */
  width: number;
  height: number;
  /** Per patch: [col, row, class index, confidence]. */
  cells: [number, number, number, number][];
  /** Under the 'attention' rule: each patch's weight in the image's answer, in the order of `cells` (they sum to 1). */
  attention?: number[];
};

export type ImagePrediction = Verdict & {
  name: string;
  grid: PatchGrid;
  scale: number | null;
  timings: { preprocessMs: number; inferenceMs: number };
  /** How unlike the training images it is; null: unknown (a package without a reference). Absent in older records. */
  atypicality?: Atypicality | null;
  /** What the input measured before normalisation (the drift page's stain and focus). Absent in older records. */
  inputs?: InputMeasures;
};

/** An answered image with the mean of its patches' features (null: the model's runner gives none). */
export interface ImageFeatures {
  status: ImagePrediction['status'];
  prediction: ImagePrediction;
  features: Float32Array | null;
}

/** An image the model declined to judge, and why. */
export interface RefusedImage {
  name: string;
  status: 'refused';
  code: string;
  message: string;
  error: PathotypeError;
}

export interface PredictorOptions {
  batchSize?: number;
  /** bfloat16 autocast: 'auto' (default) by the CPU the predictor runs on, whatever the package was trained on. */
  bf16?: Bf16Setting;
  vote?: VoteRule;
  /** Pixels of an image, in its file and at the model's scale (LIMITS.imagePixels). */
  maxPixels?: number;
  /** Patches one image may be cut into (LIMITS.imagePatches). */
  maxPatches?: number;
  /** Which engine runs the network forward: 'auto' (default) the faster one at the precision chosen (engine/inference-engine.ts). */
  engine?: InferenceEngineSetting;
}

export class Predictor {
  readonly manifest: ModelManifest;
  readonly network: Network;
  /** What runs the network forward: the addon, or ONNX Runtime on the same weights. */
  readonly runner: PatchRunner;
  readonly options: Required<Omit<PredictorOptions, 'maxPixels' | 'maxPatches' | 'bf16' | 'engine'>> & {
    bf16: boolean;
    maxPixels?: number;
  };
  readonly maxPatches: number;
  /** The training images' features, for each input's atypicality; null when the package has none. */
  readonly reference: AtypicalityReference | null;

  private constructor(
    manifest: ModelManifest,
    network: Network,
    runner: PatchRunner | undefined,
    options: PredictorOptions,
    reference: AtypicalityReference | null = null,
  ) {
    this.manifest = manifest;
    this.reference = reference;
    this.network = network;
    this.options = {
      batchSize: options.batchSize ?? DEFAULT_BATCH_SIZE,
      bf16: resolveBf16(options.bf16 ?? 'auto', (message) => process.stderr.write(`pathotype: ${message}\n`)),
      vote: options.vote ?? manifest.vote,
      ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}),
    };
    this.runner = runner ?? addonRunner(network);
    this.maxPatches = options.maxPatches ?? LIMITS.imagePatches;
  }

  /** A package's predictor, its network run by the engine `options.engine` resolves to. */
  static async load(dir: string, options: PredictorOptions = {}): Promise<Predictor> {
    const { manifest, network, runner } = await loadPackageRunner(dir, {
      bf16: resolveBf16(options.bf16 ?? 'auto'),
      engine: options.engine ?? 'auto',
    });
    return new Predictor(manifest, network, runner, options, await readReference(dir, manifest));
  }

  /** A predictor over a network already built, run by the addon. */
  static fromNetwork(manifest: ModelManifest, network: Network, options: PredictorOptions = {}): Predictor {
    return new Predictor(manifest, network, undefined, options);
  }

  /** Frees the ONNX Runtime session, when there is one. */
  async close(): Promise<void> {
    await this.runner.close();
  }

  get classes(): string[] {
    return this.manifest.classes;
  }

  /**
   * Outputs of patches already cut (uint8 HWC back to back), in batches; `signal` stops between
   * them. With `groups` (each patch's image), each image's features summed as well.
   */
  async predictPatches(
    patches: Uint8Array,
    signal?: AbortSignal,
    groups?: Int32Array,
  ): Promise<PatchOutputs & { featureSums?: FeatureSums }> {
    const bytes = this.runner.imageBytes;
    return batchedPatchOutputs(
      this.runner,
      patches.length / bytes,
      this.options.batchSize,
      (start, end) => {
        if (signal?.aborted)
          throw new PathotypeError('ERR_ABORTED', 'the prediction was stopped: its client went away');
        return patches.subarray(start * bytes, end * bytes);
      },
      { bf16: this.options.bf16, rule: this.options.vote, ...(groups ? { groups } : {}) },
    );
  }

  voteOn(outputs: PatchOutputs, count: number): ImageVote {
    return vote(
      outputs.probabilities,
      count,
      this.classes.length,
      this.options.vote,
      outputs.logProbabilities,
      outputs.attention,
    );
  }

  /** The vote on patch outputs, as a verdict under the model's rule and calibration. */
  verdictOn(outputs: PatchOutputs, count: number): { vote: ImageVote; verdict: Verdict } {
    const v = this.voteOn(outputs, count);
    return { vote: v, verdict: verdictOf(v, this.classes, this.options.vote, this.manifest.calibration) };
  }

  /** The model's patch grid over an image of this size at its scale. */
  gridOver(width: number, height: number): Grid {
    return gridFor(width, height, this.manifest.preprocess.tiles);
  }

  /**
   * A region already at the model's scale (a slide's), prepared as the model's training images
   * were, cut at the given cells of `grid`, and run through the network.
   */
  async predictRegion(
    region: RgbImage,
    grid: Grid,
    cells: readonly (readonly [number, number])[],
    options: { sumFeatures?: boolean } = {},
  ): Promise<PatchOutputs & { featureSums?: FeatureSums }> {
    const patches = cutCells(prepareRegion(region, this.manifest.preprocess), grid, cells);
    // One group: the region's tiles' features summed as they are computed.
    return this.predictPatches(
      patches,
      undefined,
      options.sumFeatures ? new Int32Array(cells.length) : undefined,
    );
  }

  async preprocess(input: ImageInput): Promise<{ image: PreprocessedImage; scale: number | null }> {
    const probe =
      input.probe ??
      (await probeImage(input.source, this.options.maxPixels ? { maxPixels: this.options.maxPixels } : {}));
    const scale = input.scale ?? inferScale(probe.width, probe.height);
    const target = this.manifest.preprocess.targetScale;
    const what = input.name ?? 'the image';
    if (target !== null && scale === null) {
      throw new PathotypeError(
        'ERR_SCALE',
        `${what} is ${probe.width}x${probe.height} with no known pixel scale; this model works at scale ` +
          `${target} of the original release: give the image's scale (--scale)`,
      );
    }
    checkEnlargement(
      `${what} (${probe.width}x${probe.height}, scale ${scale})`,
      scale,
      target,
      maxUpsamplingOf(this.manifest.preprocess),
      'the cells would be too blurred to judge',
    );
    this.#checkWork(what, probe, scale);
    const image = await preprocessImage(
      input.source,
      { width: probe.width, height: probe.height, scale },
      this.manifest.preprocess,
      this.options.maxPixels ? { maxPixels: this.options.maxPixels } : {},
    );
    // The input checks (image/input-checks.ts), in their order: the first it fails refuses it.
    refuseFailedField(image.assessment, what);
    return { image, scale };
  }

  /**
   * The work an image implies, refused before a pixel is decoded: its size at the model's scale
   * (an upload's ?scale= can enlarge a big file past the pixel limit) and its patch count.
   */
  #checkWork(what: string, probe: ImageProbe, scale: number | null): void {
    const size = sizeAtScale(probe.width, probe.height, scale, this.manifest.preprocess.targetScale);
    const maxPixels = this.options.maxPixels ?? LIMITS.imagePixels;
    if (size.width * size.height > maxPixels)
      throw new PathotypeError(
        'ERR_IMAGE_TOO_LARGE',
        `${what} would be ${size.width}x${size.height} at this model's scale (${((size.width * size.height) / 1e6).toFixed(0)} Mpx), above the limit of ${(maxPixels / 1e6).toFixed(0)} Mpx`,
      );
    const grid = this.gridOver(size.width, size.height);
    if (grid.cols * grid.rows > this.maxPatches)
      throw new PathotypeError(
        'ERR_TOO_MUCH_WORK',
        `${what} would be cut into ${grid.cols * grid.rows} patches at this model's scale; at most ${this.maxPatches} are allowed per image`,
      );
  }

  /** Predicts several images; their patches share batches. The first refused image throws. */
  async predictImages(inputs: readonly ImageInput[], signal?: AbortSignal): Promise<ImagePrediction[]> {
    const settled = await this.predictImagesSettled(inputs, signal);
    return settled.map((s) => {
      if (s.status === 'refused') throw s.error;
      return s;
    });
  }

  /**
   * Predicts several images; an image the model must not judge (too small, not H&E, mostly
   * empty, unreadable) comes back refused with its error, and the others are still answered.
   */
  async predictImagesSettled(
    inputs: readonly ImageInput[],
    signal?: AbortSignal,
  ): Promise<(ImagePrediction | RefusedImage)[]> {
    return (await this.predictWithFeatures(inputs, signal)).map((r) =>
      r.status === 'refused' ? r : r.prediction,
    );
  }

  /** As predictImagesSettled, with each answered image's mean patch features (null: the runner gives none). */
  async predictWithFeatures(
    inputs: readonly ImageInput[],
    signal?: AbortSignal,
  ): Promise<(ImageFeatures | RefusedImage)[]> {
    const refused = new Map<number, RefusedImage>();
    const accepted: ImageInput[] = [];
    const prepared: { image: PreprocessedImage; scale: number | null; ms: number }[] = [];
    for (const [k, input] of inputs.entries()) {
      const started = performance.now();
      try {
        const { image, scale } = await this.preprocess(input);
        prepared.push({ image, scale, ms: performance.now() - started });
        accepted.push(input);
      } catch (error) {
        if (!(error instanceof PathotypeError)) throw error;
        refused.set(k, {
          name: input.name ?? `image ${k + 1}`,
          status: 'refused',
          code: error.code,
          message: error.message,
          error,
        });
      }
    }
    const answered = await this.#predictPrepared(accepted, prepared, signal);
    let next = 0;
    return inputs.map((_, k) => refused.get(k) ?? (answered[next++] as ImageFeatures));
  }

  async #predictPrepared(
    inputs: readonly ImageInput[],
    prepared: readonly { image: PreprocessedImage; scale: number | null; ms: number }[],
    signal?: AbortSignal,
  ): Promise<ImageFeatures[]> {
    if (prepared.length === 0) return [];
    const all = new Uint8Array(prepared.reduce((n, p) => n + p.image.patches.length, 0));
    const groups = new Int32Array(prepared.reduce((n, p) => n + p.image.count, 0));
    let offset = 0;
    let patch = 0;
    for (const [i, p] of prepared.entries()) {
      all.set(p.image.patches, offset);
      offset += p.image.patches.length;
      groups.fill(i, patch, patch + p.image.count);
      patch += p.image.count;
    }
    const started = performance.now();
    const outputs = await this.predictPatches(all, signal, groups);
    const inferenceMs = performance.now() - started;
    const totalPatches = all.length / this.runner.imageBytes;
    let first = 0;
    return prepared.map((p, i) => {
      const count = p.image.count;
      const start = first * this.classes.length;
      const slice = (a: Float32Array): Float32Array => a.subarray(start, start + count * this.classes.length);
      const { vote: v, verdict } = this.verdictOn(
        {
          probabilities: slice(outputs.probabilities),
          ...(outputs.logProbabilities ? { logProbabilities: slice(outputs.logProbabilities) } : {}),
          ...(outputs.attention ? { attention: outputs.attention.subarray(first, first + count) } : {}),
        },
        count,
      );
      first += count;
      const features = meanFeatures(outputs.featureSums, i, count);
      const prediction: ImagePrediction = {
        name: inputs[i]?.name ?? `image ${i + 1}`,
        ...verdict,
        scale: p.scale,
        grid: {
          cols: p.image.grid.cols,
          rows: p.image.grid.rows,
          patchSize: p.image.grid.patchSize,
          stride: p.image.grid.stride,
          width: p.image.width,
          height: p.image.height,
          cells: Array.from({ length: count }, (_, k) => [
            p.image.cells[k * 2] ?? 0,
            p.image.cells[k * 2 + 1] ?? 0,
            v.patchClasses[k] ?? 0,
            rounded(v.patchConfidence[k] ?? 0),
          ]),
          ...(v.attention ? { attention: Array.from(v.attention, roundedWeight) } : {}),
        },
        timings: { preprocessMs: p.ms, inferenceMs: (inferenceMs * count) / Math.max(1, totalPatches) },
        atypicality:
          this.reference?.unit === 'images' && features
            ? atypicalityOf(this.reference, features, [p.image.stain.haematoxylin, p.image.stain.eosin])
            : null,
        inputs: inputMeasures(p.image),
      };
      return { status: prediction.status, prediction, features };
    });
  }
}
