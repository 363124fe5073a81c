/**
 * The parts of `bench engine` that set each figure against a yardstick: the machine's own GEMM
 * rate (engine/gemm-rate.ts), the networks' FLOPs per patch from their specs, and ONNX Runtime on
 * the same network and patches (the graph `pathotype export` writes), for VGG16 inference and the
 * main job's hot path, the frozen ResNet50 res4 feature pass at 96 px.
 */
import { measureGemmRate, type GemmRate } from '../engine/gemm-rate.js';
import { manualSeed, Network } from '../engine/network.js';
import { OnnxSession } from '../engine/onnx-runtime.js';
import { resolveSpec, type NetworkSpec } from '../engine/spec.js';
import { resnet50 } from '../engine/zoo.js';
import { networkToOnnx } from '../engine/onnx-graph.js';
import { softwareVersion } from '../model/package.js';
import { seededRandom } from '../random.js';
import { featureSpec } from '../engine/zoo.js';

/** Forward FLOPs; a training step is counted as 3x (forward, input gradients, weight gradients). */
export const TRAINING_FLOPS_FACTOR = 3;

export interface InferenceRow {
  network: string;
  engine: 'addon' | 'onnxruntime';
  precision: 'fp32' | 'bf16';
  patchesPerSecond: number;
}

/** GFLOP/s of a throughput, and its share of the machine's GEMM rate in that precision. */
export function gflopsOf(
  patchesPerSecond: number,
  flopsPerPatch: number,
  gemm: readonly GemmRate[],
  precision: 'fp32' | 'bf16',
): { gflops: number; share: number | undefined } {
  const gflops = (patchesPerSecond * flopsPerPatch) / 1e9;
  const limit = gemm.find((g) => g.precision === precision)?.gflops;
  return { gflops, share: limit ? gflops / limit : undefined };
}

export function flopsPerPatch(spec: NetworkSpec): number {
  return resolveSpec(spec).resolved.flopsPerSample;
}

export async function machineLimits(bf16: boolean): Promise<GemmRate[]> {
  const rates = [await measureGemmRate(false)];
  if (bf16) rates.push(await measureGemmRate(true));
  return rates;
}

/** The main job's feature network: ImageNet ResNet50 cut after res4, pooled, 96 px patches. */
export function featurePassSpec(): NetworkSpec {
  return featureSpec(resnet50({ inputSize: 96, depth: 'res4', head: { classes: 3, pooling: 'avg' } }));
}

function noise(count: number, spec: NetworkSpec): Uint8Array {
  const random = seededRandom(11);
  const { height, width, channels } = spec.input;
  return Uint8Array.from({ length: count * height * width * channels }, () => Math.floor(random() * 256));
}

/** Patches a second over `steps` calls of `step` (each a batch of `batch`), after `warmup` untimed ones. */
export async function rate(
  steps: number,
  warmup: number,
  batch: number,
  step: () => Promise<unknown>,
): Promise<number> {
  for (let i = 0; i < warmup; i++) await step();
  const started = performance.now();
  for (let i = 0; i < steps; i++) await step();
  return (steps * batch) / ((performance.now() - started) / 1000);
}

/**
 * Inference patches/s of one network through the addon in each of `addon`'s precisions (none
 * where the caller measured it already) and through ONNX Runtime (fp32), on the same weights and
 * patches, one after the other.
 */
export async function inferenceRows(
  name: string,
  spec: NetworkSpec,
  options: {
    batch: number;
    steps: number;
    warmup: number;
    threads: number;
    addon: readonly ('fp32' | 'bf16')[];
  },
): Promise<InferenceRow[]> {
  manualSeed(0);
  const network = await Network.create(spec);
  const patches = noise(options.batch, spec);
  const rows: InferenceRow[] = [];
  for (const precision of options.addon) {
    const patchesPerSecond = await rate(options.steps, options.warmup, options.batch, () =>
      network.predict(patches, { bf16: precision === 'bf16', raw: true }),
    );
    rows.push({ network: name, engine: 'addon', precision, patchesPerSecond });
  }
  const graph = networkToOnnx(spec, await network.exportTensors(), { producerVersion: softwareVersion() });
  const session = await OnnxSession.open(graph, { threads: options.threads });
  try {
    const { height, width, channels } = spec.input;
    const dims = [options.batch, height, width, channels];
    const patchesPerSecond = await rate(options.steps, options.warmup, options.batch, () =>
      session.run(patches, dims),
    );
    rows.push({ network: name, engine: 'onnxruntime', precision: 'fp32', patchesPerSecond });
  } finally {
    await session.close();
  }
  return rows;
}
