/** `pathotype data ...`: acquisition, catalog, splits and what the workspace holds. */
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';

import { fetchLymphoma, LYMPHOMA } from '../acquire/fetch.js';
import {
  DEFAULT_GROUP_RULE,
  GROUP_RULE_HELP,
  groupsWithoutIds,
  parseGroupRule,
} from '../acquire/grouping.js';
import { importImages, type ImportReport } from '../acquire/import.js';
import { importSlideManifest, isSlideManifest, type SlideImportReport } from '../acquire/slide-manifest.js';
import { TWO_SLIDES_FROM, writePatientSlides } from '../acquire/slide-mosaic.js';
import { workspaceInfo, type WorkspaceInfo } from '../prepare/info.js';
import { createSplit, SPLIT_DEFAULTS, type SplitConfig, type SplitSummary } from '../acquire/split.js';
import { DEFAULT_IDLE_TIMEOUT_MS } from '../io/download.js';
import { loadCommandConfig, print, withCatalog } from './context.js';
import { choice, fraction, nonNegativeInt, positiveInt, positiveNumber } from './options.js';
import { formatBytes, progressBar } from './progress.js';

function formatImport(report: ImportReport): string {
  const lines = [
    `imported from ${report.source}: ${report.added} added, ${report.updated} updated, ${report.unchanged} unchanged, ` +
      `${report.skipped.length} skipped; ${report.cases} cases`,
    ...Object.entries(report.perClass).map(([c, n]) => `  ${c}: ${n} images`),
  ];
  for (const s of report.skipped.slice(0, 20)) lines.push(`  skipped ${s.path}: ${s.reason}`);
  if (report.skipped.length > 20) lines.push(`  ... and ${report.skipped.length - 20} more skipped`);
  return lines.join('\n');
}

function formatSlideImport(r: SlideImportReport): string {
  return [
    `imported slides from ${r.manifest}: ${r.added} added, ${r.updated} updated; ${r.slides} slides of ${r.patients} patients`,
    ...Object.entries(r.perClass).map(([c, n]) => `  ${c}: ${n} slides`),
  ].join('\n');
}

function formatSplit(summary: SplitSummary): string {
  const lines = [`split '${summary.name}':`];
  for (const [part, perClass] of Object.entries(summary.counts)) {
    const cells = Object.entries(perClass).map(([c, v]) => `${c} ${v.images} images/${v.cases} cases`);
    lines.push(`  ${part.padEnd(11)} ${cells.join(', ')}`);
  }
  return lines.join('\n');
}

function formatInfo(info: WorkspaceInfo): string {
  const lines = [`workspace ${info.workspace}: ${info.images} images`];
  for (const [c, v] of Object.entries(info.classes))
    lines.push(`  ${c}: ${v.images} images, ${v.cases} cases`);
  for (const [c, v] of Object.entries(info.slides))
    lines.push(`  ${c}: ${v.slides} slides, ${v.patients} patients`);
  for (const s of info.splits)
    lines.push(formatSplit(s).replace(/^split/, `${s.kind} split`) + ` (seed ${s.seed})`);
  for (const p of info.patchStores) {
    lines.push(
      `patch store '${p.name}': ${p.patches} patches of ${p.patchSize}x${p.patchSize} from ${p.images} images, ` +
        `${formatBytes(p.bytes)}, split ${p.split ?? 'none'}`,
      `  per class: ${Object.entries(p.perClass)
        .map(([c, n]) => `${c} ${n}`)
        .join(', ')}`,
      `  per partition: ${Object.entries(p.perPartition)
        .map(([c, n]) => `${c} ${n}`)
        .join(', ')}`,
    );
  }
  return lines.join('\n');
}

export function registerData(program: Command): void {
  const data = program.command('data').description('get images, catalogue them, split them');
  registerFetch(data);
  registerImport(data);
  registerMosaics(data);
  registerSplit(data);
  registerInfo(data);
}

function registerFetch(data: Command): void {
  data
    .command('fetch')
    .description(`download the IICBU 2008 lymphoma set (${LYMPHOMA.file}), verify, extract and import it`)
    .option(
      '--url <url...>',
      'download addresses, tried in order (default: the official one, then the mirror)',
    )
    .option('--sha1 <hex>', 'expected SHA-1 of the tarball', LYMPHOMA.sha1)
    .option('--group-by <rule>', `patient (group) id rule: ${GROUP_RULE_HELP}`, DEFAULT_GROUP_RULE)
    .option(
      '--timeout <s>',
      'give up on an address silent for this long',
      positiveNumber,
      DEFAULT_IDLE_TIMEOUT_MS / 1000,
    )
    .option('--json', 'print the report as JSON')
    .action(
      async (
        flags: { url?: string[]; sha1: string; groupBy: string; timeout: number; json?: boolean },
        command: Command,
      ) => {
        await withCatalog(command, async (catalog, workspace) => {
          const bar = progressBar('download', 'bytes');
          const importBar = progressBar('import', 'items');
          try {
            const result = await fetchLymphoma(catalog, workspace, {
              ...(flags.url ? { urls: flags.url } : {}),
              sha1: flags.sha1,
              groupBy: parseGroupRule(flags.groupBy),
              idleTimeoutMs: flags.timeout * 1000,
              onProgress: (received, total) => bar.update(received, total),
              onImportProgress: (done, total) => importBar.update(done, total),
            });
            bar.stop();
            importBar.stop();
            print(
              flags.json,
              result,
              () =>
                `${result.download.alreadyThere ? 'already downloaded' : `downloaded from ${result.download.url ?? '?'}`}: ` +
                `${result.download.path} (${formatBytes(result.download.bytes)})\n${formatImport(result.imported)}`,
            );
          } finally {
            bar.stop();
            importBar.stop();
          }
        });
      },
    );
}

function registerImport(data: Command): void {
  data
    .command('import <source>')
    .description(
      'register a class-per-folder image collection (CLASS/image.tif ...), a .tar.gz of one, ' +
        'or a slide manifest (.csv: slide,patient,label[,mpp,fold,annotations])',
    )
    .option('--classes <list>', 'a manifest: the labels it may use, comma-separated (default: any)')
    .option('--group-by <rule>', `patient (group) id rule: ${GROUP_RULE_HELP}`, DEFAULT_GROUP_RULE)
    .option(
      '--scale <x>',
      'pixel scale relative to the original 1388x1040 release (default: inferred from the size)',
      positiveNumber,
    )
    .option('--mpp <um>', 'micrometres per pixel, when known', positiveNumber)
    .option('--json', 'print the report as JSON')
    .action(
      async (
        source: string,
        flags: { groupBy: string; scale?: number; mpp?: number; classes?: string; json?: boolean },
        command: Command,
      ) => {
        await withCatalog(command, async (catalog, workspace) => {
          if (isSlideManifest(source)) {
            const classes = flags.classes?.split(',').map((c) => c.trim());
            const report = await importSlideManifest(catalog, source, classes ? { classes } : {});
            print(flags.json, report, () => formatSlideImport(report));
            return;
          }
          const bar = progressBar('import', 'items');
          try {
            const report = await importImages(catalog, workspace, source, {
              groupBy: parseGroupRule(flags.groupBy),
              ...(flags.scale ? { scale: flags.scale } : {}),
              ...(flags.mpp ? { mpp: flags.mpp } : {}),
              onProgress: (done, total) => bar.update(done, total),
            });
            bar.stop();
            print(flags.json, report, () => formatImport(report));
            const images = catalog.images();
            if (groupsWithoutIds(images))
              process.stderr.write(
                `pathotype: warning: every one of the ${images.length} images is a group of its own (no patient id in the names, no case folders). ` +
                  'Cross-validation would then split images, not patients, and say nothing about new patients: name images by patient, ' +
                  "or put them in case folders; 'run' goes on only with --group-by none, its figures labelled split by image.\n",
              );
          } finally {
            bar.stop();
          }
        });
      },
    );
}

function registerMosaics(data: Command): void {
  data
    .command('mosaic-slides <source> <out>')
    .description(
      'write one slide per patient of a field collection (its fields on glass, a tiled pyramidal TIFF ' +
        `with resolution tags; two slides of alternate fields from ${TWO_SLIDES_FROM} fields), and out/manifest.csv`,
    )
    .option('--group-by <rule>', `patient (group) id rule: ${GROUP_RULE_HELP}`, DEFAULT_GROUP_RULE)
    .option('--mpp <um>', "the fields' microns per pixel (default: the 0.3x copy's)", positiveNumber)
    .option('--patients <list>', 'only these patients, comma-separated (default: all)')
    .option('--max-fields <n>', 'at most this many fields per slide (default: all)', positiveInt)
    .option('--json', 'print the slides as JSON')
    .action(
      async (
        source: string,
        out: string,
        flags: { groupBy: string; mpp?: number; patients?: string; maxFields?: number; json?: boolean },
      ) => {
        const result = await writePatientSlides(source, out, {
          groupBy: parseGroupRule(flags.groupBy),
          ...(flags.mpp ? { mpp: flags.mpp } : {}),
          ...(flags.patients ? { patients: flags.patients.split(',').map((p) => p.trim()) } : {}),
          ...(flags.maxFields ? { maxFields: flags.maxFields } : {}),
        });
        print(
          flags.json,
          result,
          () =>
            `${result.slides.length} slides of ${new Set(result.slides.map((s) => s.patient)).size} patients; ` +
            `manifest ${result.manifest}`,
        );
      },
    );
}

/** The kinds `data split` makes ('all', the run's final model on every patient, is the pipeline's). */
const SPLIT_KINDS = ['holdout', 'kfold', 'loo'] as const;

function registerSplit(data: Command): void {
  data
    .command('split')
    .description('partition the images stratified by class and grouped by patient (no patient on two sides)')
    .option('--config <file>', 'options from a JSON or YAML file')
    .option('--name <name>', 'split name', 'default')
    .option(
      '--kind <kind>',
      'holdout, kfold or loo (leave one patient out: one fold per patient)',
      choice(SPLIT_KINDS),
      'holdout',
    )
    .option(
      '--test <fraction>',
      'holdout: share of each class held out for testing (KNIME: 0.4)',
      fraction,
      SPLIT_DEFAULTS.testFraction,
    )
    .option('--folds <k>', 'kfold: number of folds', positiveInt, SPLIT_DEFAULTS.folds)
    .option(
      '--validation <fraction>',
      'share of the training patients kept for validation',
      fraction,
      SPLIT_DEFAULTS.validationFraction,
    )
    .option('--seed <n>', 'random seed', nonNegativeInt, SPLIT_DEFAULTS.seed)
    .option('--json', 'print the summary as JSON')
    .action(
      async (
        flags: {
          name: string;
          kind: 'holdout' | 'kfold' | 'loo';
          test: number;
          folds: number;
          validation: number;
          seed: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        loadCommandConfig(command);
        const o = command.opts<typeof flags>();
        // A config file's kind has not been through the flag's parser.
        if (!(SPLIT_KINDS as readonly string[]).includes(o.kind))
          throw new ConfigError(`kind must be one of ${SPLIT_KINDS.join(', ')} (got '${o.kind}')`);
        const common = { validationFraction: o.validation, seed: o.seed };
        const config: SplitConfig =
          o.kind === 'holdout'
            ? { kind: 'holdout', testFraction: o.test, ...common }
            : o.kind === 'kfold'
              ? { kind: 'kfold', folds: o.folds, ...common }
              : { kind: 'loo', ...common };
        await withCatalog(command, async (catalog) => {
          const summary = createSplit(catalog, o.name, config);
          print(o.json, summary, () => formatSplit(summary));
          return Promise.resolve();
        });
      },
    );
}

function registerInfo(data: Command): void {
  data
    .command('info')
    .description('counts per class, split and case; patch stores and their size on disk')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }, command: Command) => {
      await withCatalog(command, async (catalog, workspace) => {
        const info = await workspaceInfo(catalog, workspace);
        print(flags.json, info, () => formatInfo(info));
      });
    });
}
