/** `pathotype compare`: two recipes' cross-validations of the same images, paired by patient. */

import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

import type { Command } from 'commander';

import { PathotypeError } from '../errors.js';
import {
  compareCrossValidations,
  type ComparableRun,
  type CrossValidationReport,
} from '../evaluate/cross-validation.js';
import { comparableSlides, type SlideCrossValidationReport } from '../evaluate/slide-cross-validation.js';
import { percent } from '../format.js';
import { runDirFor, workspaceAt } from '../workspace.js';
import { print } from './context.js';

/** A run's cross-validation (of images or of slides): a cross-validation.json, a folder holding one, or a run's name in the workspace. */
function readCrossValidation(command: Command, what: string): ComparableRun {
  const { workspace } = command.optsWithGlobals<{ workspace: string }>();
  const candidates = [
    what,
    path.join(what, 'cross-validation.json'),
    path.join(runDirFor(workspaceAt(workspace), what), 'cross-validation.json'),
  ];
  const file = candidates.find((f) => existsSync(f) && statSync(f).isFile());
  if (!file)
    throw new PathotypeError(
      'ERR_NOT_FOUND',
      `no cross-validation at ${what} (a file, a run folder, or a run's name)`,
    );
  try {
    const report = JSON.parse(readFileSync(file, 'utf8')) as
      CrossValidationReport | SlideCrossValidationReport;
    return 'kind' in report && report.kind === 'slides'
      ? comparableSlides(report)
      : (report as CrossValidationReport);
  } catch (cause) {
    throw new PathotypeError(
      'ERR_EVALUATE',
      `${file} is not a cross-validation report: ${(cause as Error).message}`,
      {
        cause,
      },
    );
  }
}

export function registerCompare(program: Command): void {
  program
    .command('compare <a> <b>')
    .description(
      "two runs' cross-validations of the same images or slides (cross-validation.json, its folder, or a run's name): the difference of their accuracies with a 95% interval from a paired bootstrap over patients",
    )
    .option('--json', 'print the comparison as JSON')
    .action((a: string, b: string, flags: { json?: boolean }, command: Command) => {
      const c = compareCrossValidations(readCrossValidation(command, a), readCrossValidation(command, b));
      const points = (v: number): string => `${v >= 0 ? '+' : ''}${(v * 100).toFixed(1)}`;
      print(flags.json, c, () =>
        [
          `${c.a.name} ${percent(c.a.accuracy)} against ${c.b.name} ${percent(c.b.accuracy)} on the same ${c.images} ${c.unit} of ${c.groups} patients:`,
          `  difference ${points(c.difference.estimate)} points (95% CI ${points(c.difference.low)} to ${points(c.difference.high)}, paired bootstrap over patients)`,
          `  right only by ${c.a.name}: ${c.onlyA} ${c.unit}; only by ${c.b.name}: ${c.onlyB}`,
        ].join('\n'),
      );
    });
}
