/**
 * The predictor shared by evaluate, predict and serve: preprocess an image exactly as training
 * did (the package's normalisation, scale and tiling), run its patches through the network in
 * batches shared between images, and vote.
 */
import { PathotypeError } from '../errors.js';
import type { Network } from '../engine/network.js';
import { preprocessImage, type PreprocessedImage } from '../data/preprocess.js';
import { probeImage } from '../data/image-io.js';
import { inferScale } from '../data/import.js';
import { loadPackageNetwork, type ModelManifest } from '../model/package.js';
import { vote, type ImageVote, type VoteRule } from './vote.js';

export interface ImageInput {
  source: string | Buffer;
  /** Pixel scale relative to the original release; inferred from the size when absent. */
  scale?: number | null;
  name?: string;
}

export interface PatchGrid {
  cols: number;
  rows: number;
  size: number;
  stride: number;
  /** Size of the image the grid was cut from (at the model's scale). */
  width: number;
  height: number;
  /** Per patch: [col, row, class index, confidence]. */
  cells: [number, number, number, number][];
}

export interface ImagePrediction {
  name: string;
  predicted: string;
  rule: VoteRule;
  byMajority: string;
  byMean: string;
  voteShares: Record<string, number>;
  meanProbabilities: Record<string, number>;
  patches: number;
  grid: PatchGrid;
  scale: number | null;
  timings: { preprocessMs: number; inferenceMs: number };
}

export interface PredictorOptions {
  batchSize?: number;
  bf16?: boolean;
  vote?: VoteRule;
  maxPixels?: number;
}

export class Predictor {
  readonly manifest: ModelManifest;
  readonly network: Network;
  readonly options: Required<Omit<PredictorOptions, 'maxPixels'>> & { maxPixels?: number };

  private constructor(manifest: ModelManifest, network: Network, options: PredictorOptions) {
    this.manifest = manifest;
    this.network = network;
    this.options = {
      batchSize: options.batchSize ?? 64,
      bf16: options.bf16 ?? false,
      vote: options.vote ?? manifest.vote,
      ...(options.maxPixels ? { maxPixels: options.maxPixels } : {}),
    };
  }

  static async load(dir: string, options: PredictorOptions = {}): Promise<Predictor> {
    const { manifest, network } = await loadPackageNetwork(dir);
    return new Predictor(manifest, network, options);
  }

  static fromNetwork(manifest: ModelManifest, network: Network, options: PredictorOptions = {}): Predictor {
    return new Predictor(manifest, network, options);
  }

  get classes(): string[] {
    return this.manifest.classes;
  }

  /** Probabilities for patches already cut (uint8 HWC back to back), in batches. */
  async predictPatches(patches: Uint8Array): Promise<Float32Array> {
    const bytes = this.network.imageBytes;
    const count = patches.length / bytes;
    const out = new Float32Array(count * this.classes.length);
    for (let i = 0; i < count; i += this.options.batchSize) {
      const end = Math.min(count, i + this.options.batchSize);
      const probs = await this.network.predict(patches.subarray(i * bytes, end * bytes), {
        bf16: this.options.bf16,
      });
      out.set(probs, i * this.classes.length);
    }
    return out;
  }

  voteOn(probabilities: Float32Array, count: number): ImageVote {
    return vote(probabilities, count, this.classes.length, this.options.vote);
  }

  async preprocess(input: ImageInput): Promise<{ image: PreprocessedImage; scale: number | null }> {
    const probe = await probeImage(
      input.source,
      this.options.maxPixels ? { maxPixels: this.options.maxPixels } : {},
    );
    const scale = input.scale ?? inferScale(probe.width, probe.height);
    if (this.manifest.preprocess.targetScale !== null && scale === null) {
      throw new PathotypeError(
        'ERR_SCALE',
        `${input.name ?? 'the image'} is ${probe.width}x${probe.height} with no known pixel scale; this model works at scale ` +
          `${this.manifest.preprocess.targetScale} of the original release: give the image's scale (--scale)`,
      );
    }
    const image = await preprocessImage(
      input.source,
      { width: probe.width, height: probe.height, scale },
      this.manifest.preprocess,
      this.options.maxPixels ? { maxPixels: this.options.maxPixels } : {},
    );
    if (image.background.length === 0) {
      throw new PathotypeError(
        'ERR_NO_PATCHES',
        `${input.name ?? 'the image'} yields no tissue patches at this model's patch size and scale`,
      );
    }
    return { image, scale };
  }

  /** Predicts several images; their patches share batches. */
  async predictImages(inputs: readonly ImageInput[]): Promise<ImagePrediction[]> {
    const prepared: { image: PreprocessedImage; scale: number | null; ms: number }[] = [];
    for (const input of inputs) {
      const started = performance.now();
      const { image, scale } = await this.preprocess(input);
      prepared.push({ image, scale, ms: performance.now() - started });
    }
    const all = new Uint8Array(prepared.reduce((n, p) => n + p.image.patches.length, 0));
    let offset = 0;
    for (const p of prepared) {
      all.set(p.image.patches, offset);
      offset += p.image.patches.length;
    }
    const started = performance.now();
    const probabilities = await this.predictPatches(all);
    const inferenceMs = performance.now() - started;
    const totalPatches = all.length / this.network.imageBytes;
    let first = 0;
    return prepared.map((p, i) => {
      const count = p.image.background.length;
      const rows = probabilities.subarray(first * this.classes.length, (first + count) * this.classes.length);
      first += count;
      const v = this.voteOn(rows, count);
      const named = (values: number[]): Record<string, number> =>
        Object.fromEntries(this.classes.map((c, k) => [c, values[k] ?? 0]));
      return {
        name: inputs[i]?.name ?? `image ${i + 1}`,
        predicted: this.classes[v.predicted] ?? '',
        rule: this.options.vote,
        byMajority: this.classes[v.byMajority] ?? '',
        byMean: this.classes[v.byMean] ?? '',
        voteShares: named(v.voteShares),
        meanProbabilities: named(v.meanProbabilities),
        patches: count,
        scale: p.scale,
        grid: {
          cols: p.image.grid.cols,
          rows: p.image.grid.rows,
          size: p.image.grid.size,
          stride: p.image.grid.stride,
          width: p.image.width,
          height: p.image.height,
          cells: Array.from({ length: count }, (_, k) => [
            p.image.cells[k * 2] ?? 0,
            p.image.cells[k * 2 + 1] ?? 0,
            v.patchClasses[k] ?? 0,
            Number((v.patchConfidence[k] ?? 0).toFixed(4)),
          ]),
        },
        timings: { preprocessMs: p.ms, inferenceMs: (inferenceMs * count) / Math.max(1, totalPatches) },
      };
    });
  }
}
