/** `pathotype train`: a model package from a patch store. */

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import type { Command } from 'commander';

import { availableCores } from '../cpu.js';
import { ProcessGroup } from '../engine/distributed.js';
import { startJsonProcess } from '../io/json-process.js';
import { freeLoopbackPort } from '../io/net.js';

import { merge, readConfigFile } from '../config.js';
import { ConfigError, PathotypeError } from '../errors.js';
import { percent } from '../format.js';
import { resolveWeights } from '../engine/weights/registry.js';
import { ARCHITECTURES, type Architecture } from '../engine/zoo.js';
import { resolveTrainConfig } from '../train/config.js';
import { PRESETS, presetNames } from '../pipeline/presets.js';
import { train, type TrainResult } from '../train/trainer.js';
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

/**
 * The local launcher (like torchrun): N copies of this command as ranks 0..N-1 on a free
 * loopback port, the cores shared out between them. When one fails the others are stopped.
 */
async function launchRanks(nproc: number, command: Command): Promise<number> {
  const port = await freeLoopbackPort();
  const threads = Math.max(1, Math.floor(availableCores() / nproc));
  const argv = process.argv
    .slice(2)
    .filter((a, i, all) => a !== '--nproc' && all[i - 1] !== '--nproc' && !a.startsWith('--nproc='));
  const children = Array.from({ length: nproc }, (_, rank) =>
    spawn(
      process.execPath,
      [
        process.argv[1] ?? '',
        ...argv,
        '--world-size',
        String(nproc),
        '--rank',
        String(rank),
        '--rendezvous',
        `127.0.0.1:${port}`,
        ...(command.getOptionValueSource('threads') === 'cli' ? [] : ['--threads', String(threads)]),
      ],
      // Rank 0 speaks for the group; the others' output would repeat it.
      { stdio: rank === 0 ? 'inherit' : ['ignore', 'ignore', 'inherit'] },
    ),
  );
  const codes = await Promise.all(
    children.map(
      (child) =>
        new Promise<number>((resolve) =>
          child.on('close', (code) => {
            if (code !== 0) for (const other of children) if (other.exitCode === null) other.kill('SIGTERM');
            resolve(code ?? 1);
          }),
        ),
    ),
  );
  return codes.find((c) => c !== 0) ?? 0;
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
    .action(async (flags: TrainFlags, command: Command) => {
      if (flags.nproc !== undefined && flags.nproc > 1) {
        process.exitCode = await launchRanks(flags.nproc, command);
        return;
      }
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
          const group = await joinGroup(flags);
          const result = await train(workspace, config, {
            resume: flags.resume ? true : flags.resumeIfFits ? 'auto' : false,
            ...(flags.allowMissingPretrained ? { allowMissingPretrained: true } : {}),
            ...(group ? { group } : {}),
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

/**
 * A training as N data-parallel ranks in child processes (`run --nproc N`): the resolved
 * configuration goes to `train --config` through a temporary file, and rank 0's JSON result
 * comes back.
 */
export function ranksTrainer(nproc: number): typeof train {
  return async (workspace, config, options) => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pathotype-train-'));
    const file = path.join(dir, 'train.json');
    writeFileSync(file, JSON.stringify(config));
    const args = [
      process.argv[1] ?? '',
      '-w',
      workspace.root,
      'train',
      '--config',
      file,
      '--nproc',
      String(nproc),
      '--json',
      ...(options?.resume === true ? ['--resume'] : options?.resume === 'auto' ? ['--resume-if-fits'] : []),
      ...(options?.allowMissingPretrained ? ['--allow-missing-pretrained'] : []),
    ];
    try {
      return await startJsonProcess<TrainResult>(args, { what: `the ${nproc} training ranks` }).result.catch(
        (cause: unknown) => {
          throw new PathotypeError('ERR_TRAIN', (cause as Error).message, { cause });
        },
      );
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
