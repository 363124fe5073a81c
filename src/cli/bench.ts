/** `pathotype bench ...`: speed measurements that print figures and ratios against baselines. */
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { Command } from 'commander';
import { ConfigError } from '../errors.js';

import {
  DEFAULT_ENGINE_BENCH,
  formatEngineBench,
  runEngineBench,
  type EngineBenchOptions,
} from '../bench/engine.js';
import { DEFAULT_BUSY_BENCH, formatBusyBench, runBusyBench } from '../bench/busy.js';
import { formatDdpBench, runDdpBench, type DdpBenchOptions } from '../bench/ddp.js';
import { formatAbuseBench, runAbuseBench } from '../bench/abuse.js';
import { formatServeBench, runServeBench } from '../bench/serve.js';
import { BENCH_BASES, type BenchBase } from '../bench/slide-model.js';
import {
  formatSlideBench,
  formatSlideFeatureBench,
  runSlideBench,
  runSlideFeatureBench,
} from '../bench/slide.js';
import { WAIT_POLICIES, type WaitPolicy } from '../cpu.js';
import { resolveModelDir } from './context.js';
import { choice, nonNegativeInt, positiveInt, positiveNumber } from './options.js';

type EngineFlags = EngineBenchOptions & { json?: boolean };

export function registerBench(program: Command): void {
  const bench = program
    .command('bench')
    .description('measure speed against baselines run in the same process or run');
  registerBenchEngine(bench);
  registerBenchBusy(bench);
  registerBenchDdp(bench);
  registerBenchSlide(bench);
  registerBenchServe(bench);
  registerBenchAbuse(bench);
}

function registerBenchEngine(bench: Command): void {
  const d = DEFAULT_ENGINE_BENCH;
  bench
    .command('engine')
    .description(
      'VGG16 on 64x64 patches: training and inference patches/s through the addon, a plain C++ libtorch ' +
        'program and PyTorch from Python, with ratios; and bf16 autocast speed and accuracy',
    )
    .option('--json', 'print the report as JSON')
    .option('--threads <n>', 'libtorch threads', positiveInt, d.threads)
    .option('--batch <n>', 'patches per batch', positiveInt, d.batch)
    .option('--size <px>', 'patch side (a multiple of 32)', positiveInt, d.size)
    .option('--train-steps <n>', 'timed training batches', positiveInt, d.trainSteps)
    .option('--predict-steps <n>', 'timed inference batches', positiveInt, d.predictSteps)
    .option('--warmup <n>', 'untimed batches first', nonNegativeInt, d.warmup)
    .option('--no-bf16', 'skip the bf16 autocast measurements')
    .option('--no-cxx', 'skip the plain C++ baseline')
    .option('--no-python', 'skip the PyTorch-from-Python baseline')
    .option('--no-onnx', 'skip ONNX Runtime and the ResNet50 res4 feature pass')
    .action(async (flags: EngineFlags) => {
      if (flags.size % 32 !== 0)
        throw new ConfigError('--size must be a multiple of 32 (VGG16 halves it five times)');
      const { json, ...options } = flags;
      const report = await runEngineBench(options, (stage) => {
        if (!json) process.stderr.write(`measuring: ${stage}\n`);
      });
      process.stdout.write(json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEngineBench(report)}\n`);
    });
}

function registerBenchBusy(bench: Command): void {
  bench
    .command('busy')
    .description(
      'training beside a competing load: for each OpenMP wait policy, a training alone and beside a second one; ' +
        'throughput, slowdown and CPU time per patch',
    )
    .option('--seconds <s>', 'how long each measured training runs', positiveInt, DEFAULT_BUSY_BENCH.seconds)
    .option('--threads <n>', 'threads of each training process', positiveInt, DEFAULT_BUSY_BENCH.threads)
    .option('--policy <name...>', `wait policies to compare (${WAIT_POLICIES.join(', ')})`)
    .option(
      '--repeats <n>',
      'rounds over all policies (each row: the median round)',
      positiveInt,
      DEFAULT_BUSY_BENCH.repeats,
    )
    .option('--json', 'print the rows as JSON')
    .action(
      async (flags: {
        seconds: number;
        threads: number;
        policy?: string[];
        repeats: number;
        json?: boolean;
      }) => {
        const unknown = (flags.policy ?? []).filter((p) => !(WAIT_POLICIES as readonly string[]).includes(p));
        if (unknown.length > 0)
          throw new ConfigError(`unknown wait policy ${unknown.join(', ')} (${WAIT_POLICIES.join(', ')})`);
        const rows = await runBusyBench(
          {
            seconds: flags.seconds,
            threads: flags.threads,
            repeats: flags.repeats,
            policies: (flags.policy as WaitPolicy[] | undefined) ?? DEFAULT_BUSY_BENCH.policies,
          },
          (stage) => process.stderr.write(`bench busy: ${stage}\n`),
        );
        process.stdout.write(
          flags.json ? `${JSON.stringify(rows, null, 2)}\n` : `${formatBusyBench(rows)}\n`,
        );
      },
    );
}

function registerBenchDdp(bench: Command): void {
  bench
    .command('ddp')
    .description(
      'data-parallel training (c10d, Gloo) against one process: global patches/s and the all-reduce share of a step',
    )
    .option('--architecture <name>', 'vgg16, mobilenet_v2, small_cnn, ...', 'vgg16')
    .option('--threads <n>', 'threads of the single process; shared out between the ranks', positiveInt, 2)
    .option('--ranks <n>', 'ranks', positiveInt, 2)
    .option('--steps <n>', 'timed steps', positiveInt, 8)
    .option('--batch <n>', 'global batch (split between the ranks)', positiveInt, 32)
    .option('--size <px>', 'patch side', positiveInt, 64)
    .action(async (flags: DdpBenchOptions) => {
      const rows = await runDdpBench(flags, (s) => process.stderr.write(`bench ddp: ${s}\n`));
      process.stdout.write(`${formatDdpBench(flags, rows)}\n`);
    });
}

function registerBenchSlide(bench: Command): void {
  bench
    .command('slide')
    .description(
      'whole-slide inference on a generated ~40,000 x 30,000 px slide: peak RSS, and tiles/s against the predictor on the same tiles in memory',
    )
    .option(
      '--images <dir>',
      'development images (class folders)',
      path.resolve('../shared/data/iicbu2008-lymphoma-0.3x'),
    )
    .option(
      '--slide <file>',
      'where the generated slide is kept',
      path.join(os.tmpdir(), 'pathotype-bench-slide.tif'),
    )
    .option('--across <n>', 'cells of 417 x 312 px across', positiveInt, 96)
    .option('--down <n>', 'cells down', positiveInt, 96)
    .option('--model-scale <x>', 'level-0 pixels per model pixel', positiveNumber, 4)
    .option(
      '--features',
      "training's feature extraction instead (the slide's bag): tiles/s against the image path's feature pass on the same tiles in memory, peak RSS",
    )
    .option(
      '--base <name>',
      "with --features: small_cnn (32 px tiles: reads weigh most) or resnet50 (the frozen-base presets' ResNet50 to res4, 96 px tiles)",
      choice(BENCH_BASES),
      'small_cnn',
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (flags: {
        images: string;
        slide: string;
        across: number;
        down: number;
        modelScale: number;
        features?: boolean;
        base: BenchBase;
        json?: boolean;
      }) => {
        const options = {
          images: flags.images,
          slide: flags.slide,
          across: flags.across,
          down: flags.down,
          modelScale: flags.modelScale,
          base: flags.base,
        };
        const onStage = (stage: string): boolean => process.stderr.write(`bench slide: ${stage}\n`);
        const text = flags.features
          ? await runSlideFeatureBench(options, onStage).then((r) =>
              flags.json ? JSON.stringify(r, null, 2) : formatSlideFeatureBench(r),
            )
          : await runSlideBench(options, onStage).then((r) =>
              flags.json ? JSON.stringify(r, null, 2) : formatSlideBench(r),
            );
        process.stdout.write(`${text}\n`);
      },
    );
}

function registerBenchServe(bench: Command): void {
  bench
    .command('serve')
    .description(
      'bounded load test on loopback: N clients for T seconds against pathotype serve; throughput, p50/p95, errors, peak RSS',
    )
    .requiredOption('--model <dir>', 'model package directory (or a model name in the workspace)')
    .option('--clients <n>', 'concurrent clients', positiveInt, 16)
    .option('--seconds <s>', 'how long the clients post', positiveInt, 20)
    .option('--image <file>', 'image to post (default: a generated 1388x1040 field)')
    .option('--scale <x>', "the image's scale relative to the original release", positiveNumber)
    .option('--bf16', 'bfloat16 autocast in the server')
    .option('--instances <n>', 'servers behind one database, the clients taking turns', positiveInt, 1)
    .option('--database <url>', 'the PostgreSQL database the instances share (postgres://...)')
    .option('--kill-after <s>', 'kill the last instance with SIGKILL this many seconds in', positiveNumber)
    .option('--json', 'print the report as JSON')
    .action(
      async (
        flags: {
          model: string;
          clients: number;
          seconds: number;
          image?: string;
          scale?: number;
          bf16?: boolean;
          instances: number;
          database?: string;
          killAfter?: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        const { workspace } = command.optsWithGlobals<{ workspace: string }>();
        const report = await runServeBench({
          model: flags.model,
          workspace,
          clients: flags.clients,
          seconds: flags.seconds,
          bf16: flags.bf16 ?? false,
          instances: flags.instances,
          ...(flags.killAfter !== undefined ? { killAfter: flags.killAfter } : {}),
          ...(flags.database ? { database: flags.database } : {}),
          ...(flags.image ? { image: flags.image } : {}),
          ...(flags.scale ? { scale: flags.scale } : {}),
        });
        process.stdout.write(
          flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatServeBench(report)}\n`,
        );
      },
    );
}

function registerBenchAbuse(bench: Command): void {
  bench
    .command('abuse')
    .description(
      'hostile load on a protected server on loopback, bounded: an ordinary client idle and during N concurrent large uploads beside a sign-in flood, peak RSS and RSS after, uploads trickled from one key, M trickling connections cut off, failed sign-in times',
    )
    .requiredOption('--model <dir>', 'model package directory (or a model name in the workspace)')
    .option('--uploads <n>', 'concurrent large uploads, each from its own key', positiveInt, 40)
    .option('--upload-mb <n>', 'size of each upload in MB', positiveInt, 40)
    .option('--sign-in-loops <n>', 'concurrent loops of failing sign-ins during the uploads', positiveInt, 10)
    .option('--slow-bodies <n>', 'uploads trickled a byte every 2 s from one key', positiveInt, 34)
    .option('--slow <n>', 'connections that trickle their headers', positiveInt, 600)
    .option('--json', 'print the report as JSON')
    .action(
      async (
        flags: {
          model: string;
          uploads: number;
          uploadMb: number;
          signInLoops: number;
          slowBodies: number;
          slow: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        // The server's data (users, keys, uploads) in a throw-away workspace, never the user's.
        const report = await runAbuseBench({
          model: resolveModelDir(command, flags.model),
          workspace: mkdtempSync(path.join(os.tmpdir(), 'pathotype-abuse-')),
          uploads: flags.uploads,
          uploadMegabytes: flags.uploadMb,
          signInLoops: flags.signInLoops,
          slowBodies: flags.slowBodies,
          slowConnections: flags.slow,
        });
        process.stdout.write(
          flags.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatAbuseBench(report)}\n`,
        );
      },
    );
}
