/** `pathotype train`: a model package from a patch store. */

import type { Command } from 'commander';

import { ProcessGroup } from '../engine/distributed.js';

import { merge, readConfigFile } from '../config.js';
import { ConfigError } from '../errors.js';
import { resolveWeights } from '../engine/weights/registry.js';
import { ARCHITECTURES, type Architecture } from '../engine/zoo.js';
import { resolveTrainConfig } from '../train/config.js';
import { PRESETS, presetNames } from '../pipeline/presets.js';
import { epochLine } from '../train/epoch-line.js';
import { localRanks, trainOnRanks } from '../train/launch.js';
import { train, type TrainResult } from '../train/trainer.js';
import { print, withCatalog } from './context.js';
import { choice, nonNegativeInt, positiveInt, positiveNumber } from './options.js';
import { trainBar } from './progress.js';

interface TrainFlags {
  config?: string;
  preset?: string;
  name?: string;
  store?: string;
  architecture?: Architecture;
  alpha?: number;
  pretrained?: string;
  epochs?: number;
  learningRate?: number;
  batchSize?: number;
  patchesPerEpoch?: number;
  balance?: 'none' | 'sampling' | 'weights';
  bf16?: boolean;
  seed?: number;
  threads?: number;
  patience?: number;
  resume?: boolean;
  nproc?: number;
  resumeIfFits?: boolean;
  allowMissingPretrained?: boolean;
  worldSize?: number;
  rank?: number;
  rendezvous?: string;
  json?: boolean;
}

/** This process's place in a data-parallel group, when --world-size says there is one. */
async function joinGroup(flags: TrainFlags): Promise<ProcessGroup | undefined> {
  if (flags.worldSize === undefined || flags.worldSize < 2) return undefined;
  const match = /^(.+):(\d+)$/.exec(flags.rendezvous ?? '');
  if (!match || flags.rank === undefined)
    throw new ConfigError('data-parallel training needs --rank and --rendezvous HOST:PORT with --world-size');
  return ProcessGroup.join({
    rank: flags.rank,
    worldSize: flags.worldSize,
    host: match[1] as string,
    port: Number(match[2]),
  });
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('train a model on a patch store and write a model package (workspace/models/NAME)')
    .option('--config <file>', 'training config (JSON or YAML); flags override it')
    .option('--preset <name>', `start from a preset's training recipe (${presetNames().join(', ')})`)
    .option('--name <name>', 'model name')
    .option('--store <name>', 'patch store to train on')
    .option('--architecture <name>', ARCHITECTURES.join(', '), choice(ARCHITECTURES))
    .option('--alpha <x>', 'MobileNet width multiplier', positiveNumber)
    .option('--pretrained <path>', "ImageNet weights: a Keras .h5, a TensorFlow.js folder, or 'weights:ID'")
    .option('--epochs <n>', 'epochs (one phase, all layers trained)', positiveInt)
    .option('--learning-rate <x>', 'learning rate of every phase', positiveNumber)
    .option('--batch-size <n>', 'patches per batch', positiveInt)
    .option('--patches-per-epoch <n>', 'patches drawn per epoch (0: all)', nonNegativeInt)
    .option('--balance <how>', 'none, sampling or weights', choice(['none', 'sampling', 'weights'] as const))
    .option(
      '--bf16',
      'bfloat16 autocast even without native bf16 (default auto: only where the CPU has it, about 2x faster there)',
    )
    .option('--no-bf16', 'float32 throughout')
    .option('--seed <n>', 'random seed', nonNegativeInt)
    .option('--threads <n>', 'libtorch threads (0: all cores)', nonNegativeInt)
    .option('--patience <n>', 'early stopping on validation image accuracy (0: off)', nonNegativeInt)
    .option('--resume', 'continue from the last checkpoint of this name')
    .option(
      '--resume-if-fits',
      "continue from the last checkpoint when it was made with this configuration (run's rule)",
    )
    .option(
      '--allow-missing-pretrained',
      'train on random weights when the pretrained file is missing (said in the package)',
    )
    .option(
      '--nproc <n>',
      'data-parallel training: start N local ranks on this machine (c10d, Gloo)',
      positiveInt,
    )
    .option('--world-size <n>', 'data-parallel training: ranks in the group', positiveInt)
    .option(
      '--rank <r>',
      "data-parallel training: this process's rank (0 writes the package)",
      nonNegativeInt,
    )
    .option('--rendezvous <host:port>', "data-parallel training: rank 0's address for the rendezvous")
    .option('--json', 'print the result as JSON')
    .action(trainCommand);
}

/** The training recipe: a preset's, then the config file's, then the flags given on the command line. */
function trainInput(flags: TrainFlags, command: Command): Record<string, unknown> {
  let input: Record<string, unknown> = {};
  if (flags.preset) {
    const preset = PRESETS[flags.preset];
    if (!preset) throw new ConfigError(`unknown preset '${flags.preset}' (${presetNames().join(', ')})`);
    input = { ...preset.train, name: preset.name, store: preset.name };
  }
  if (flags.config) input = merge(input, readConfigFile(flags.config));
  for (const key of FLAG_KEYS) {
    const value = flags[key];
    if (value !== undefined && command.getOptionValueSource(key) === 'cli') input[key] = value;
  }
  if (flags.epochs !== undefined)
    input.phases = [
      { ...((input.phases as object[] | undefined)?.at(-1) ?? {}), epochs: flags.epochs, trainable: 'all' },
    ];
  if (flags.learningRate !== undefined) {
    input.phases = ((input.phases as object[] | undefined) ?? [{ epochs: 10 }]).map((p) => ({
      ...p,
      learningRate: flags.learningRate,
    }));
  }
  input.phases ??= [{ epochs: 10 }];
  return input;
}

/** Training options given as flags, taken into the recipe as they are. */
const FLAG_KEYS = [
  'name',
  'store',
  'architecture',
  'alpha',
  'pretrained',
  'batchSize',
  'patchesPerEpoch',
  'balance',
  'bf16',
  'seed',
  'threads',
  'patience',
] as const;

async function trainCommand(flags: TrainFlags, command: Command): Promise<void> {
  const input = trainInput(flags, command);
  await withCatalog(command, async (_catalog, workspace) => {
    if (typeof input.pretrained === 'string') input.pretrained = resolveWeights(input.pretrained, workspace);
    const config = resolveTrainConfig(input);
    const resume = flags.resume ? true : flags.resumeIfFits ? 'auto' : false;
    const allowMissingPretrained = flags.allowMissingPretrained ?? false;
    const done = (result: TrainResult): void =>
      print(
        flags.json,
        result,
        () =>
          `model package ${result.packageDir} (version ${result.manifest.version}) in ${result.seconds.toFixed(0)} s`,
      );
    const ranks = localRanks(flags.nproc);
    if (ranks) {
      done(await trainOnRanks(workspace, config, ranks, { resume, allowMissingPretrained }));
      return;
    }
    const { bar, update } = trainBar();
    try {
      const group = await joinGroup(flags);
      const result = await train(workspace, config, {
        resume,
        allowMissingPretrained,
        ...(group ? { group } : {}),
        onProgress: update,
        onEpoch: (e) => {
          bar.stop();
          if (!flags.json) process.stderr.write(`${epochLine(e)}\n`);
        },
        onNotice: (m) => process.stderr.write(`pathotype: ${m}\n`),
      });
      bar.stop();
      done(result);
    } finally {
      bar.stop();
    }
  });
}
