/** `pathotype prepare`: normalise and tile the catalogued images into a patch store. */
import type { Command } from 'commander';

import { NORMALISATION_METHODS, type NormalisationMethod } from '../data/normalise.js';
import { prepare } from '../data/prepare.js';
import { loadCommandConfig, print, withCatalog } from './context.js';
import { choice, fraction, positiveInt, positiveNumber } from './options.js';
import { progressBar } from './progress.js';

interface PrepareFlags {
  name: string;
  split?: string;
  normalisation: NormalisationMethod;
  reference?: string;
  percentileLow: number;
  percentileHigh: number;
  targetScale?: number;
  ownScale?: boolean;
  patchSize: number;
  stride?: number;
  background: boolean;
  backgroundBrightness: number;
  backgroundMaxFraction: number;
  threads?: number;
  force?: boolean;
  json?: boolean;
}

export function registerPrepare(program: Command): void {
  program
    .command('prepare')
    .description('normalise each image, resample it to the target scale and cut it into a patch store')
    .option('--config <file>', 'options from a JSON or YAML file')
    .option('--name <name>', 'patch store name (workspace/patches/NAME)', 'default')
    .option('--split <name>', 'split whose partitions the store records')
    .option(
      '--normalisation <method>',
      `none, percentile (KNIME-style stretch), reinhard, macenko, haematoxylin (the nuclear stain alone) or grey (luminance, stretched)`,
      choice(NORMALISATION_METHODS),
      'percentile',
    )
    .option(
      '--reference <image>',
      'reference image for reinhard/macenko: a path or a catalogued CLASS/file name',
    )
    .option('--percentile-low <p>', 'percentile stretch: low percentile', Number, 1)
    .option('--percentile-high <p>', 'percentile stretch: high percentile', Number, 99)
    .option(
      '--target-scale <x>',
      'tile at this scale relative to the original 1388x1040 release (KNIME: 1)',
      positiveNumber,
      1,
    )
    .option('--own-scale', 'tile every image at its own scale (ignores --target-scale)')
    .option('--patch-size <px>', 'patch side in pixels at the target scale (KNIME: 64)', positiveInt, 64)
    .option('--stride <px>', 'step between patches (default: the patch size)', positiveInt)
    .option('--background', 'drop patches that are mostly empty glass', false)
    .option(
      '--background-brightness <v>',
      'background: luminance above which a grey pixel is glass',
      Number,
      220,
    )
    .option(
      '--background-max-fraction <f>',
      'background: largest share of glass a kept patch may have',
      fraction,
      0.5,
    )
    .option('--threads <n>', 'worker threads (default: all cores)', positiveInt)
    .option('--force', 'rebuild even when an identical store exists')
    .option('--json', 'print the report as JSON')
    .action(async (_flags: PrepareFlags, command: Command) => {
      loadCommandConfig(command);
      const o = command.opts<PrepareFlags>();
      await withCatalog(command, async (catalog, workspace) => {
        const bar = progressBar('prepare', 'items', ' | {patches} patches');
        try {
          const report = await prepare(catalog, workspace, {
            name: o.name,
            ...(o.split ? { split: o.split } : {}),
            normalisation: {
              method: o.normalisation,
              percentiles: [o.percentileLow, o.percentileHigh],
              ...(o.reference ? { reference: o.reference } : {}),
            },
            targetScale: o.ownScale ? null : (o.targetScale ?? 1),
            tiles: { size: o.patchSize, stride: o.stride ?? o.patchSize },
            background: {
              enabled: o.background,
              brightness: o.backgroundBrightness,
              maxFraction: o.backgroundMaxFraction,
            },
            ...(o.threads ? { threads: o.threads } : {}),
            ...(o.force ? { force: true } : {}),
            onProgress: (done, total, patches) => bar.update(done, total, { patches }),
          });
          bar.stop();
          const m = report.manifest;
          print(o.json, report, () =>
            [
              `${report.reused ? 'already prepared' : 'prepared'} '${m.name}' in ${report.dir}: ${m.count} patches of ` +
                `${m.patchSize}x${m.patchSize} from ${m.images} images in ${report.seconds.toFixed(1)} s`,
              ...report.skipped.map((s) => `  skipped ${s.path}: ${s.reason}`),
            ].join('\n'),
          );
        } finally {
          bar.stop();
        }
      });
    });
}
