/** `pathotype run`: the whole workflow for a preset, resumable stage by stage. */
import path from 'node:path';

import type { Command } from 'commander';

import { GROUP_RULE_HELP } from '../acquire/grouping.js';
import { readConfigFile } from '../config.js';
import { ConfigError } from '../errors.js';
import { percent } from '../format.js';
import { isSlideManifest } from '../acquire/slide-manifest.js';
import { presetNames } from '../pipeline/presets.js';
import { runSlidePipeline, type SlideRunResult } from '../pipeline/slide-run.js';
import { resolvePreset, runPipeline, type RunResult, type StageRun } from '../pipeline/run.js';
import { print, withCatalog } from './context.js';
import { positiveInt } from './options.js';
import { extractionBar, trainBar, type Progress } from './progress.js';
import { addRecipeOptions, recipeFromCommand } from './recipe-options.js';

export function registerRun(program: Command): void {
  const command = program
    .command('run')
    .description(
      'the whole workflow for a preset: import or fetch, split, prepare, train, evaluate; resumable stage by stage',
    )
    .requiredOption('--preset <name>', presetNames().join(', '))
    .option(
      '--data <source>',
      "images to import (a class-per-folder folder or a .tar.gz), 'fetch' to download the set, or a slide manifest " +
        '(.csv: slide,patient,label[,mpp,fold,annotations]) to learn from whole slides with a frozen-base recipe',
    )
    .option(
      '--name <name>',
      "model, split and store name (default: the preset's name; with an ONNX encoder, the encoder file's name and the method, e.g. uni-probe)",
    )
    .option('--config <file>', 'overrides of the preset: { groupBy, split, prepare, train } (JSON or YAML)')
    .option(
      '--group-by <rule>',
      `patient (group) id rule, over the preset's: ${GROUP_RULE_HELP}; 'none' lets a run go on when every image is its own group, its figures labelled split by image`,
    )
    .option(
      '--folds <k|loo>',
      "cross-validation by patient: k folds, or 'loo' (leave one patient out); each image is predicted by a model that never saw its " +
        "patient, then the final model trains on every patient (the preset's validation share and seed)",
      (value: string): number | 'loo' => (value === 'loo' ? 'loo' : positiveInt(value)),
    )
    .option(
      '--nproc <n>',
      'train each model with N data-parallel ranks on this machine (c10d, Gloo)',
      positiveInt,
    )
    .option('--fresh', 'start every stage over')
    .option('--json', 'print the result as JSON');
  // The preparation flags of `prepare`, on top of the preset's and the config file's recipe.
  addRecipeOptions(command, 'preset').action(
    async (
      flags: {
        preset: string;
        data?: string;
        name?: string;
        config?: string;
        folds?: number | 'loo';
        groupBy?: string;
        fresh?: boolean;
        nproc?: number;
        json?: boolean;
      },
      command: Command,
    ) => {
      const overrides = runOverrides(command, flags);
      if (flags.data && isSlideManifest(flags.data)) {
        await runSlides(command, { ...flags, data: flags.data }, overrides);
        return;
      }
      await withCatalog(command, async (catalog, workspace) => {
        const { bar, update } = trainBar();
        try {
          const result = await runPipeline(catalog, workspace, {
            preset: flags.preset,
            ...(flags.data ? { data: flags.data === 'fetch' ? 'fetch' : path.resolve(flags.data) } : {}),
            ...(flags.name ? { name: flags.name } : {}),
            overrides,
            ...(flags.fresh ? { fresh: true } : {}),
            ...(flags.nproc !== undefined ? { nproc: flags.nproc } : {}),
            ...stageLines(bar),
            onTrainProgress: update,
          });
          bar.stop();
          print(flags.json, runJson(result), () => runText(result));
        } finally {
          bar.stop();
        }
      });
    },
  );
}

/** The preset's overrides: the config file, the recipe flags, then --folds. Checked here, before any work. */
export function runOverrides(
  command: Command,
  flags: { preset: string; config?: string; folds?: number | 'loo'; groupBy?: string },
): Record<string, unknown> {
  let overrides = flags.config ? readConfigFile(flags.config) : {};
  if (flags.groupBy !== undefined) overrides = { ...overrides, groupBy: flags.groupBy };
  const prepare = recipeFromCommand(command, overrides.prepare ?? {});
  if (Object.keys(prepare).length > 0) overrides = { ...overrides, prepare };
  if (flags.folds !== undefined) {
    const split = resolvePreset(flags.preset, overrides).split;
    const common = { validationFraction: split.validationFraction, seed: split.seed };
    overrides = {
      ...overrides,
      split:
        flags.folds === 'loo' ? { kind: 'loo', ...common } : { kind: 'kfold', folds: flags.folds, ...common },
    };
  }
  resolvePreset(flags.preset, overrides);
  return overrides;
}

function runJson(result: RunResult): Record<string, unknown> {
  const summary = (run: StageRun): Record<string, unknown> => ({
    ...run,
    evaluation: {
      json: run.evaluation.json,
      html: run.evaluation.html,
      imageAccuracy: run.evaluation.report.image.accuracy,
    },
  });
  const cv = result.crossValidation;
  return {
    ...result,
    runs: result.runs.map(summary),
    ...(cv
      ? {
          crossValidation: {
            json: cv.json,
            rule: cv.report.rule,
            imageAccuracy: cv.report.image.accuracy,
            accuracyInterval: cv.report.accuracyInterval,
            balancedAccuracy: cv.report.image.balancedAccuracy,
            balancedAccuracyInterval: cv.report.balancedAccuracyInterval,
            imageAccuracyMajority: cv.report.imageMajority.accuracy,
            imageAccuracyMean: cv.report.imageMean.accuracy,
            groupsMostlyRight: cv.report.groupsMostlyRight,
            abstention: {
              calibration: cv.report.abstention.calibration,
              crossValidated: cv.report.abstention.crossValidated,
            },
            foldAccuracy: cv.report.foldAccuracy,
            folds: cv.report.folds,
          },
        }
      : {}),
  };
}

function runText(result: RunResult): string {
  const cv = result.crossValidation?.report;
  const lines = result.runs.map((run) => {
    const r = run.evaluation.report;
    return (
      `${run.fold === null ? `${result.name} (${result.label})` : `fold ${run.fold}`}: image accuracy ${percent(r.image.accuracy)} (${r.rule} vote) ` +
      `on ${r.images.length} held-out images of unseen patients; majority ${percent(r.imageMajority.accuracy)}, mean-probability ${percent(r.imageMean.accuracy)}; ` +
      `patch accuracy ${percent(r.patch.accuracy)}; report ${run.evaluation.html}`
    );
  });
  if (cv) {
    const ci = (i: { low: number; high: number }): string => `95% CI ${percent(i.low)}-${percent(i.high)}`;
    const cvd = cv.abstention.crossValidated;
    lines.push(
      `${result.name} (${result.label}), ${cv.folds.length}-fold cross-validation ${cv.splitByImage ? 'split by image (every image its own group; not an estimate for new patients)' : `by patient (${cv.groups.length} patients)`}: ` +
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
}

/** A run's stage lines and notices on stderr, the progress bar cleared before each stage line. */
function stageLines(bar: Progress): {
  onStage: (stage: string, detail: string) => void;
  onNotice: (message: string) => void;
} {
  return {
    onStage: (stage, detail) => {
      bar.stop();
      process.stderr.write(`run: ${stage}: ${detail}\n`);
    },
    onNotice: (m) => process.stderr.write(`pathotype: ${m}\n`),
  };
}

/** `run --data MANIFEST.csv`: a frozen-base recipe learnt from whole slides, cross-validated by patient. */
async function runSlides(
  command: Command,
  flags: { preset: string; data: string; name?: string; nproc?: number; json?: boolean },
  overrides: Record<string, unknown>,
): Promise<void> {
  if (flags.nproc !== undefined)
    throw new ConfigError(
      '--nproc spreads fine-tuning over ranks; a slide recipe fits a head on cached features and takes none',
    );
  await withCatalog(command, async (catalog, workspace) => {
    const { bar, update } = extractionBar();
    try {
      const result = await runSlidePipeline(catalog, workspace, {
        preset: flags.preset,
        manifest: path.resolve(flags.data),
        ...(flags.name ? { name: flags.name } : {}),
        overrides,
        ...stageLines(bar),
        onExtractProgress: update,
      });
      bar.stop();
      print(flags.json, slideRunJson(result), () => slideRunText(result));
    } finally {
      bar.stop();
    }
  });
}

function slideRunJson(result: SlideRunResult): Record<string, unknown> {
  const { report, json, html } = result.crossValidation;
  return {
    ...result,
    preset: result.preset.name,
    crossValidation: {
      json,
      html,
      rule: report.rule,
      aggregation: report.aggregation,
      slideAccuracy: report.slide.accuracy,
      slideAccuracyInterval: report.slideAccuracyInterval,
      slideBalancedAccuracy: report.slide.balancedAccuracy,
      slideBalancedAccuracyInterval: report.slideBalancedAccuracyInterval,
      patientAccuracy: report.patient.accuracy,
      patientAccuracyInterval: report.patientAccuracyInterval,
      patientBalancedAccuracy: report.patient.balancedAccuracy,
      patientBalancedAccuracyInterval: report.patientBalancedAccuracyInterval,
      abstention: {
        calibration: report.abstention.calibration,
        crossValidated: report.abstention.crossValidated,
      },
      folds: report.folds,
    },
  };
}

function slideRunText(result: SlideRunResult): string {
  const { report, html } = result.crossValidation;
  const ci = (i: { low: number; high: number }): string => `95% CI ${percent(i.low)}-${percent(i.high)}`;
  const cvd = report.abstention.crossValidated;
  const lines = [
    `${result.preset.name} on slides, ${report.folds.length}-fold cross-validation by patient (${report.patients.length} patients, ${report.slides.length} slides, ` +
      `${report.aggregation} bags, ${report.rule} vote):`,
    `  slide accuracy ${percent(report.slide.accuracy)} (${ci(report.slideAccuracyInterval)}), balanced ${percent(report.slide.balancedAccuracy)} (${ci(report.slideBalancedAccuracyInterval)})`,
    `  patient accuracy ${percent(report.patient.accuracy)} (${ci(report.patientAccuracyInterval)}), balanced ${percent(report.patient.balancedAccuracy)} (${ci(report.patientBalancedAccuracyInterval)})`,
    `  per patient: ${report.patients.map((p) => `${p.patient} ${p.className}->${p.predicted}`).join(', ')}`,
    `  abstention (threshold fitted on the other folds): answers ${percent(cvd.coverage)} of slides, ` +
      (cvd.answeredAccuracy === null ? 'none answered' : `${percent(cvd.answeredAccuracy)} right`),
    `  features: ${result.extraction.extracted} slides extracted, ${result.extraction.cached} cached, ${result.extraction.tiles} usable tiles (${result.extraction.seconds.toFixed(0)} s)`,
    ...(result.excluded.length > 0
      ? [
          `  left out for too little usable tissue (${result.excluded.length}):`,
          ...result.excluded.map((e) => `    ${e.slide}: ${e.reason}`),
        ]
      : ['  no slide left out']),
    `  report ${html}`,
  ];
  if (result.final)
    lines.push(
      `final model on all ${result.final.slides} usable slides: ${result.final.packageDir} (${result.final.seconds.toFixed(0)} s)`,
    );
  lines.push(`whole run ${(result.seconds / 60).toFixed(1)} min`);
  return lines.join('\n');
}
