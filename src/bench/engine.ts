/**
 * `pathotype bench engine`: VGG16 on 64x64 patches, training and inference patches/s through the
 * addon, beside the same work in the same run by a plain C++ libtorch program built from this
 * repository and by PyTorch from Python (when installed). Each runs alone, one after another.
 * Every figure is also given in GFLOP/s and as a share of the machine's own GEMM rate; ONNX Runtime
 * runs the same networks as a yardstick (engine-limits.ts). Also measures bf16 autocast: its
 * speed, and its effect on accuracy over several seeds.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

import { manualSeed, Network, setThreads } from '../engine/network.js';
import { makePatternSet, sliceBatch } from '../engine/synthetic.js';
import { seededRandom } from '../random.js';
import { argmax } from '../predict/vote.js';
import { cpuHasNativeBf16 } from '../engine/precision.js';
import { smallCnn, vgg16 } from '../engine/zoo.js';
import type { GemmRate } from '../engine/gemm-rate.js';
import {
  featurePassSpec,
  flopsPerPatch,
  gflopsOf,
  inferenceRows,
  machineLimits,
  rate,
  TRAINING_FLOPS_FACTOR,
  type InferenceRow,
} from './engine-limits.js';

const run = promisify(execFile);
const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
const baselineBinary = path.join(root, 'native/build/engine-bench');
const pytorchScript = path.join(root, 'native/bench/engine_pytorch.py');

export interface EngineBenchOptions {
  threads: number;
  batch: number;
  size: number;
  trainSteps: number;
  predictSteps: number;
  warmup: number;
  bf16: boolean;
  cxx: boolean;
  python: boolean;
  /** ONNX Runtime on the same networks, and the ResNet50 res4 feature pass. */
  onnx: boolean;
}

export const DEFAULT_ENGINE_BENCH: EngineBenchOptions = {
  threads: 2,
  batch: 32,
  size: 64,
  trainSteps: 8,
  predictSteps: 16,
  warmup: 2,
  bf16: true,
  cxx: true,
  python: true,
  onnx: true,
};

/** Seeds the small CNN is trained from in each precision. */
const BF16_SEEDS = [1, 2, 3] as const;
/** The main job's feature pass: its batch (as the probe extracts). */
const FEATURE_BATCH = 64;

export interface Throughput {
  trainPerSecond: number;
  predictPerSecond: number;
}

export interface EngineRow {
  engine: 'addon' | 'cxx' | 'pytorch';
  precision: 'fp32' | 'bf16';
  /**
   * A baseline run again under the addon's allocator policy (freed memory kept for reuse):
   * what is left of the difference is the engines' own, not the kernel's page faults.
   */
  keptMemory?: boolean;
  /** Missing when that engine is not available here; `note` says why. */
  result?: Throughput;
  note?: string;
}

export interface Bf16Effect {
  /** VGG16, same weights and batch: largest absolute difference of a class probability. */
  vggMaxProbabilityDifference: number;
  vggArgmaxAgreement: number;
  /** Small CNN trained from each seed in both precisions on a generated pattern set, evaluated on held-out patterns. */
  smallCnn: { seed: number; fp32Accuracy: number; bf16Accuracy: number }[];
}

export interface EngineBenchReport {
  options: EngineBenchOptions;
  cpuHasBf16: boolean;
  rows: EngineRow[];
  ratios: { name: string; train?: number; predict?: number }[];
  bf16Effect?: Bf16Effect;
  /** The machine's own limit: large GEMMs through libtorch on the same threads. */
  gemm: GemmRate[];
  /** Forward FLOPs of one patch, counted from the specs. */
  flops: { vgg16: number; featurePass: number };
  /** Inference through the addon and ONNX Runtime: VGG16, and the main job's feature pass. */
  inference: InferenceRow[];
}

function vggSpec(options: EngineBenchOptions): ReturnType<typeof vgg16> {
  return vgg16({
    inputSize: options.size,
    head: { classes: 3, pooling: 'flatten', hidden: [256], dropout: 0.5 },
  });
}

function randomBatch(options: EngineBenchOptions): { images: Uint8Array; labels: Int32Array } {
  const random = seededRandom(7);
  const images = new Uint8Array(options.batch * options.size * options.size * 3);
  for (let i = 0; i < images.length; i++) images[i] = Math.floor(random() * 256);
  const labels = Int32Array.from({ length: options.batch }, (_, i) => i % 3);
  return { images, labels };
}

async function addonThroughput(options: EngineBenchOptions, bf16: boolean): Promise<Throughput> {
  manualSeed(0);
  const network = await Network.create(vggSpec(options));
  await network.configureOptimizer({ type: 'sgd', learningRate: 1e-3, momentum: 0.9 });
  const { images, labels } = randomBatch(options);
  const trainPerSecond = await rate(options.trainSteps, options.warmup, options.batch, () =>
    network.trainStep(images, labels, { bf16 }),
  );
  const predictPerSecond = await rate(options.predictSteps, options.warmup, options.batch, () =>
    network.predict(images, { bf16 }),
  );
  return { trainPerSecond, predictPerSecond };
}

function commonArgs(options: EngineBenchOptions, bf16: boolean): string[] {
  const args = [
    '--threads',
    String(options.threads),
    '--batch',
    String(options.batch),
    '--size',
    String(options.size),
    '--train-steps',
    String(options.trainSteps),
    '--predict-steps',
    String(options.predictSteps),
    '--warmup',
    String(options.warmup),
  ];
  return bf16 ? [...args, '--bf16'] : args;
}

function parseThroughput(stdout: string): Throughput {
  const line = stdout.trim().split('\n').pop() ?? '';
  const parsed = JSON.parse(line) as Partial<Throughput>;
  if (typeof parsed.trainPerSecond !== 'number' || typeof parsed.predictPerSecond !== 'number') {
    throw new Error(`unexpected output: ${line}`);
  }
  return { trainPerSecond: parsed.trainPerSecond, predictPerSecond: parsed.predictPerSecond };
}

/**
 * The addon's allocator policy (native/src/addon.cc ApplyMemoryPolicy: one arena, no mmap, no
 * trimming) as glibc's tunables, so a baseline process can run under it too.
 */
const KEPT_MEMORY_TUNABLES =
  'glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=2147483647';

/** A baseline's environment: glibc's defaults, or the addon's policy. */
function baselineEnv(keptMemory: boolean): NodeJS.ProcessEnv {
  return keptMemory ? { ...process.env, GLIBC_TUNABLES: KEPT_MEMORY_TUNABLES } : process.env;
}

/** A baseline's row before it runs: which engine, at which precision, under which allocator. */
function baselineRow(engine: 'cxx' | 'pytorch', bf16: boolean, keptMemory: boolean): EngineRow {
  return { engine, precision: bf16 ? 'bf16' : 'fp32', ...(keptMemory ? { keptMemory } : {}) };
}

async function cxxThroughput(
  options: EngineBenchOptions,
  bf16: boolean,
  keptMemory: boolean,
): Promise<EngineRow> {
  const row = baselineRow('cxx', bf16, keptMemory);
  if (!existsSync(baselineBinary)) return { ...row, note: 'not built: run npm run build:native' };
  const { stdout } = await run(baselineBinary, commonArgs(options, bf16), {
    timeout: 600_000,
    env: baselineEnv(keptMemory),
  });
  return { ...row, result: parseThroughput(stdout) };
}

/** A Python that can import torch: $PATHOTYPE_PYTHON, Debian's, or the first on PATH. */
export async function findTorchPython(): Promise<string | undefined> {
  const candidates = [process.env.PATHOTYPE_PYTHON, '/usr/bin/python3', 'python3'].filter(
    (c): c is string => typeof c === 'string' && c.length > 0,
  );
  for (const python of candidates) {
    try {
      await run(python, ['-c', 'import torch'], { timeout: 60_000 });
      return python;
    } catch {
      // not this one
    }
  }
  return undefined;
}

async function pytorchThroughput(
  python: string | undefined,
  options: EngineBenchOptions,
  bf16: boolean,
  keptMemory: boolean,
): Promise<EngineRow> {
  const row = baselineRow('pytorch', bf16, keptMemory);
  if (!python) return { ...row, note: 'PyTorch for Python is not installed (apt-get install python3-torch)' };
  const { stdout } = await run(python, [pytorchScript, ...commonArgs(options, bf16)], {
    timeout: 600_000,
    env: baselineEnv(keptMemory),
  });
  return { ...row, result: parseThroughput(stdout) };
}

async function trainPatterns(bf16: boolean, seed: number): Promise<number> {
  manualSeed(seed);
  const size = 32;
  const train = makePatternSet(192, size, 11 + 100 * seed);
  const test = makePatternSet(96, size, 12 + 100 * seed);
  const network = await Network.create(smallCnn({ inputSize: size, head: { classes: 3 } }));
  await network.configureOptimizer({ type: 'adam', learningRate: 3e-3 });
  for (let epoch = 0; epoch < 3; epoch++) {
    for (let i = 0; i < train.count; i += 32) {
      const { images, labels } = sliceBatch(train, i, i + 32);
      await network.trainStep(images, labels, { bf16, augment: { flip: true, rotate90: true } });
    }
  }
  const probs = await network.predict(test.images, { bf16 });
  let correct = 0;
  for (let i = 0; i < test.count; i++)
    if (argmax(probs.subarray(i * 3, i * 3 + 3)) === test.labels[i]) correct++;
  return correct / test.count;
}

async function bf16Effect(options: EngineBenchOptions): Promise<Bf16Effect> {
  manualSeed(0);
  const network = await Network.create(vggSpec(options));
  const { images } = randomBatch(options);
  const fp32 = await network.predict(images);
  const bf16 = await network.predict(images, { bf16: true });
  let maxDiff = 0;
  let agree = 0;
  for (let i = 0; i < options.batch; i++) {
    const a = fp32.subarray(i * 3, i * 3 + 3);
    const b = bf16.subarray(i * 3, i * 3 + 3);
    for (let c = 0; c < 3; c++) maxDiff = Math.max(maxDiff, Math.abs((a[c] ?? 0) - (b[c] ?? 0)));
    if (argmax(a) === argmax(b)) agree++;
  }
  const smallCnn: Bf16Effect['smallCnn'] = [];
  for (const seed of BF16_SEEDS)
    smallCnn.push({
      seed,
      fp32Accuracy: await trainPatterns(false, seed),
      bf16Accuracy: await trainPatterns(true, seed),
    });
  return { vggMaxProbabilityDifference: maxDiff, vggArgmaxAgreement: agree / options.batch, smallCnn };
}

function ratio(
  a: EngineRow | undefined,
  b: EngineRow | undefined,
  key: keyof Throughput,
): number | undefined {
  if (!a?.result || !b?.result) return undefined;
  return a.result[key] / b.result[key];
}

async function throughputRows(
  options: EngineBenchOptions,
  precisions: readonly ('fp32' | 'bf16')[],
  progress: (message: string) => void,
): Promise<EngineRow[]> {
  const python = options.python ? await findTorchPython() : undefined;
  const rows: EngineRow[] = [];
  for (const precision of precisions) {
    const bf16 = precision === 'bf16';
    progress(`addon ${precision}`);
    rows.push({ engine: 'addon', precision, result: await addonThroughput(options, bf16) });
    // Each baseline as its users run it (glibc's defaults), then under the addon's allocator policy.
    for (const keptMemory of [false, true]) {
      const how = keptMemory ? ", the addon's allocator policy" : '';
      if (options.cxx) {
        progress(`plain C++ ${precision}${how}`);
        rows.push(await cxxThroughput(options, bf16, keptMemory));
      }
      if (options.python) {
        progress(`PyTorch ${precision}${how}`);
        rows.push(await pytorchThroughput(python, options, bf16, keptMemory));
      }
    }
  }
  return rows;
}

function ratiosOf(rows: EngineRow[], precisions: readonly ('fp32' | 'bf16')[]): EngineBenchReport['ratios'] {
  const find = (
    engine: EngineRow['engine'],
    precision: EngineRow['precision'],
    keptMemory = false,
  ): EngineRow | undefined =>
    rows.find(
      (r) => r.engine === engine && r.precision === precision && (r.keptMemory ?? false) === keptMemory,
    );
  const ratios: EngineBenchReport['ratios'] = [];
  for (const precision of precisions) {
    for (const keptMemory of [false, true])
      for (const [other, label] of [
        ['cxx', 'C++'],
        ['pytorch', 'PyTorch'],
      ] as const) {
        const addon = find('addon', precision);
        const baseline = find(other, precision, keptMemory);
        const train = ratio(addon, baseline, 'trainPerSecond');
        const predict = ratio(addon, baseline, 'predictPerSecond');
        if (train !== undefined && predict !== undefined)
          ratios.push({
            name: `addon/${label}${keptMemory ? ' (same allocator)' : ''} ${precision}`,
            train,
            predict,
          });
      }
  }
  if (precisions.includes('bf16')) {
    ratios.push({
      name: 'addon bf16/fp32',
      train: ratio(find('addon', 'bf16'), find('addon', 'fp32'), 'trainPerSecond'),
      predict: ratio(find('addon', 'bf16'), find('addon', 'fp32'), 'predictPerSecond'),
    });
  }
  return ratios;
}

export async function runEngineBench(
  options: EngineBenchOptions,
  progress: (message: string) => void = () => undefined,
): Promise<EngineBenchReport> {
  setThreads(options.threads);
  const precisions: ('fp32' | 'bf16')[] = options.bf16 ? ['fp32', 'bf16'] : ['fp32'];
  progress('the machine limit (large GEMMs)');
  const gemm = await machineLimits(options.bf16);
  const rows = await throughputRows(options, precisions, progress);
  const inference: InferenceRow[] = [];
  if (options.onnx) {
    const steps = { steps: options.predictSteps, warmup: options.warmup, threads: options.threads };
    progress('VGG16 inference in ONNX Runtime');
    // The addon's VGG16 inference is in the throughput rows already.
    inference.push(
      ...(await inferenceRows('vgg16', vggSpec(options), { ...steps, batch: options.batch, addon: [] })),
    );
    progress('ResNet50 res4 feature pass (addon, ONNX Runtime)');
    inference.push(
      ...(await inferenceRows('resnet50-res4-96', featurePassSpec(), {
        ...steps,
        steps: Math.max(2, Math.ceil(options.predictSteps / 4)),
        batch: FEATURE_BATCH,
        addon: precisions,
      })),
    );
  }
  const report: EngineBenchReport = {
    options,
    cpuHasBf16: cpuHasNativeBf16(),
    rows,
    ratios: ratiosOf(rows, precisions),
    gemm,
    flops: { vgg16: flopsPerPatch(vggSpec(options)), featurePass: flopsPerPatch(featurePassSpec()) },
    inference,
  };
  if (options.bf16) {
    progress('bf16 accuracy effect');
    report.bf16Effect = await bf16Effect(options);
  }
  return report;
}

const ENGINE_LABEL: Record<EngineRow['engine'], string> = {
  addon: 'pathotype addon',
  cxx: 'plain C++ libtorch',
  pytorch: 'PyTorch (Python)',
};

function shareText(share: number | undefined): string {
  return share === undefined ? '-' : `${(share * 100).toFixed(0)}%`;
}

function throughputLines(report: EngineBenchReport): string[] {
  const o = report.options;
  const flops = report.flops.vgg16;
  const lines = [
    `VGG16, ${o.size}x${o.size} patches (${(flops / 1e9).toFixed(2)} GFLOP forward), batch ${o.batch}, ${o.threads} threads ` +
      `(${o.trainSteps} training and ${o.predictSteps} inference batches after ${o.warmup} warm-up; a training step counted ${TRAINING_FLOPS_FACTOR}x)`,
    '',
    `${'engine'.padEnd(22)}${'precision'.padEnd(11)}${'train p/s'.padStart(11)}${'GFLOP/s'.padStart(9)}${'share'.padStart(7)}` +
      `${'infer p/s'.padStart(11)}${'GFLOP/s'.padStart(9)}${'share'.padStart(7)}`,
  ];
  for (const row of report.rows) {
    const label = `${ENGINE_LABEL[row.engine]}${row.keptMemory ? ' *' : ''}`;
    const head = `${label.padEnd(22)}${row.precision.padEnd(11)}`;
    if (!row.result) {
      lines.push(`${head}  ${row.note ?? 'unavailable'}`);
      continue;
    }
    const train = gflopsOf(
      row.result.trainPerSecond,
      TRAINING_FLOPS_FACTOR * flops,
      report.gemm,
      row.precision,
    );
    const infer = gflopsOf(row.result.predictPerSecond, flops, report.gemm, row.precision);
    lines.push(
      `${head}${row.result.trainPerSecond.toFixed(1).padStart(11)}${train.gflops.toFixed(0).padStart(9)}${shareText(train.share).padStart(7)}` +
        `${row.result.predictPerSecond.toFixed(1).padStart(11)}${infer.gflops.toFixed(0).padStart(9)}${shareText(infer.share).padStart(7)}`,
    );
  }
  if (report.rows.some((r) => r.keptMemory))
    lines.push(
      "* the same baseline under the addon's allocator policy (freed memory kept for reuse: GLIBC_TUNABLES)",
    );
  return lines;
}

function inferenceLines(report: EngineBenchReport): string[] {
  if (report.inference.length === 0) return [];
  const lines = [
    '',
    `inference beside ONNX Runtime (same weights and patches; resnet50-res4-96: the main job's feature pass, ` +
      `${(report.flops.featurePass / 1e9).toFixed(2)} GFLOP a patch, batch ${FEATURE_BATCH})`,
    `${'network'.padEnd(20)}${'engine'.padEnd(14)}${'precision'.padEnd(11)}${'p/s'.padStart(9)}${'GFLOP/s'.padStart(9)}${'share'.padStart(7)}`,
  ];
  for (const row of report.inference) {
    const flops = row.network === 'vgg16' ? report.flops.vgg16 : report.flops.featurePass;
    const { gflops, share } = gflopsOf(row.patchesPerSecond, flops, report.gemm, row.precision);
    lines.push(
      `${row.network.padEnd(20)}${row.engine.padEnd(14)}${row.precision.padEnd(11)}${row.patchesPerSecond.toFixed(1).padStart(9)}` +
        `${gflops.toFixed(0).padStart(9)}${shareText(share).padStart(7)}`,
    );
  }
  return lines;
}

function bf16Lines(report: EngineBenchReport): string[] {
  const effect = report.bf16Effect;
  if (!effect) return [];
  const pct = (v: number): string => `${(v * 100).toFixed(1)}%`;
  const mean = (key: 'fp32Accuracy' | 'bf16Accuracy'): number =>
    effect.smallCnn.reduce((a, r) => a + r[key], 0) / Math.max(1, effect.smallCnn.length);
  return [
    '',
    `bf16 autocast (CPU has native bf16: ${report.cpuHasBf16 ? 'yes' : 'no'}):`,
    `  VGG16 probabilities vs fp32: max |difference| ${effect.vggMaxProbabilityDifference.toExponential(1)}, ` +
      `same class for ${(effect.vggArgmaxAgreement * 100).toFixed(0)}% of patches`,
    `  small CNN on generated patterns, held-out accuracy by seed (fp32 / bf16): ` +
      effect.smallCnn.map((r) => `${r.seed}: ${pct(r.fp32Accuracy)} / ${pct(r.bf16Accuracy)}`).join(', ') +
      `; mean ${pct(mean('fp32Accuracy'))} / ${pct(mean('bf16Accuracy'))}`,
  ];
}

/** Wide enough for the longest ratio's name ('addon/PyTorch (same allocator) bf16'). */
const RATIO_NAME_WIDTH = 38;

export function formatEngineBench(report: EngineBenchReport): string {
  const limits = report.gemm.map((g) => `${g.precision} ${g.gflops.toFixed(0)} GFLOP/s`).join(', ');
  const lines = [
    `machine limit (libtorch GEMM ${report.gemm[0]?.side ?? 0}^3, ${report.options.threads} threads): ${limits}`,
    ...throughputLines(report),
    '',
    `${'ratio'.padEnd(RATIO_NAME_WIDTH)}${'train'.padStart(11)}${'infer'.padStart(11)}`,
  ];
  for (const r of report.ratios) {
    const fmt = (v: number | undefined): string => (v === undefined ? '-' : `${v.toFixed(2)}x`).padStart(11);
    lines.push(`${r.name.padEnd(RATIO_NAME_WIDTH)}${fmt(r.train)}${fmt(r.predict)}`);
  }
  lines.push(...inferenceLines(report), ...bf16Lines(report));
  return lines.join('\n');
}
