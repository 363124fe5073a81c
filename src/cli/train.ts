/** `pathotype train`: a model package from a patch store. */

import type { Command } from 'commander';

import { merge, readConfigFile } from '../config.js';
import { ConfigError } from '../errors.js';
import { percent } from '../html.js';
import { resolveWeights } from '../engine/weights/registry.js';
import { ARCHITECTURES, type Architecture } from '../engine/zoo.js';
import { resolveTrainConfig } from '../train/config.js';
import { PRESETS, presetNames } from '../pipeline/presets.js';
import { train } from '../train/trainer.js';
import { print, withCatalog } from './context.js';
import { choice, nonNegativeInt, positiveInt, positiveNumber } from './options.js';
import { trainBar } from './progress.js';

function epochLine(e: {
  epoch: number;
  loss: number;
  accuracy: number;
  validationImageAccuracy?: number;
  patchesPerSecond: number;
  seconds: number;
}): string {
  const validation =
    e.validationImageAccuracy === undefined
      ? ''
      : `, validation image accuracy ${percent(e.validationImageAccuracy)}`;
  return `epoch ${e.epoch}: loss ${e.loss.toFixed(3)}, patch accuracy ${percent(e.accuracy)}${validation} (${e.patchesPerSecond.toFixed(0)} patches/s, ${e.seconds.toFixed(0)} s)`;
}

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
  json?: boolean;
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
    .option('--bf16', 'bfloat16 autocast (about 2x faster on CPUs with bf16 instructions)')
    .option('--no-bf16', 'float32 throughout')
    .option('--seed <n>', 'random seed', nonNegativeInt)
    .option('--threads <n>', 'libtorch threads (0: all cores)', nonNegativeInt)
    .option('--patience <n>', 'early stopping on validation image accuracy (0: off)', nonNegativeInt)
    .option('--resume', 'continue from the last checkpoint of this name')
    .option('--json', 'print the result as JSON')
    .action(async (flags: TrainFlags, command: Command) => {
      let input: Record<string, unknown> = {};
      if (flags.preset) {
        const preset = PRESETS[flags.preset];
        if (!preset) throw new ConfigError(`unknown preset '${flags.preset}' (${presetNames().join(', ')})`);
        input = { ...preset.train, name: preset.name, store: preset.name };
      }
      if (flags.config) input = merge(input, readConfigFile(flags.config));
      const set = (key: string, value: unknown): void => {
        if (value !== undefined && command.getOptionValueSource(key) === 'cli') input[key] = value;
      };
      for (const key of [
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
      ] as const) {
        set(key, flags[key]);
      }
      if (flags.epochs !== undefined)
        input.phases = [
          {
            ...((input.phases as object[] | undefined)?.at(-1) ?? {}),
            epochs: flags.epochs,
            trainable: 'all',
          },
        ];
      if (flags.learningRate !== undefined) {
        input.phases = ((input.phases as object[] | undefined) ?? [{ epochs: 10 }]).map((p) => ({
          ...p,
          learningRate: flags.learningRate,
        }));
      }
      input.phases ??= [{ epochs: 10 }];
      await withCatalog(command, async (_catalog, workspace) => {
        if (typeof input.pretrained === 'string')
          input.pretrained = resolveWeights(input.pretrained, workspace);
        const config = resolveTrainConfig(input);
        const { bar, update } = trainBar();
        try {
          const result = await train(workspace, config, {
            resume: flags.resume ?? false,
            onProgress: update,
            onEpoch: (e) => {
              bar.stop();
              if (!flags.json) process.stderr.write(`${epochLine(e)}\n`);
            },
            onNotice: (m) => process.stderr.write(`pathotype: ${m}\n`),
          });
          bar.stop();
          print(
            flags.json,
            result,
            () =>
              `model package ${result.packageDir} (version ${result.manifest.version}) in ${result.seconds.toFixed(0)} s`,
          );
        } finally {
          bar.stop();
        }
      });
    });
}
