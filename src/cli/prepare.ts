/** `pathotype prepare`: normalise and tile the catalogued images into a patch store. */
import type { Command } from 'commander';

import { readConfigFile } from '../config.js';
import { prepare } from '../prepare/prepare.js';
import { print, withCatalog } from './context.js';
import { applyConfigFile, positiveInt } from './options.js';
import { progressBar } from './progress.js';
import { addRecipeOptions, recipeFromCommand, splitRecipeKeys } from './recipe-options.js';

interface PrepareFlags {
  config?: string;
  name: string;
  split?: string;
  threads?: number;
  force?: boolean;
  json?: boolean;
}

export function registerPrepare(program: Command): void {
  const command = program
    .command('prepare')
    .description('normalise each image, resample it to the target scale and cut it into a patch store')
    .option(
      '--config <file>',
      "options from a JSON or YAML file: the recipe's keys (patchSize, normalisation, ...) and name, split, threads, force",
    )
    .option('--name <name>', 'patch store name (workspace/patches/NAME)', 'default')
    .option('--split <name>', 'split whose partitions the store records');
  addRecipeOptions(command)
    .option('--threads <n>', 'worker threads (default: all cores)', positiveInt)
    .option('--force', 'rebuild even when an identical store exists')
    .option('--json', 'print the report as JSON')
    .action(async (_flags: PrepareFlags, command: Command) => {
      const file = command.opts<PrepareFlags>().config;
      const { recipe, rest } = splitRecipeKeys(file ? readConfigFile(file) : {});
      applyConfigFile(command, rest);
      const o = command.opts<PrepareFlags>();
      await withCatalog(command, async (catalog, workspace) => {
        const bar = progressBar('prepare', 'items', ' | {patches} patches');
        try {
          const report = await prepare(catalog, workspace, {
            name: o.name,
            ...(o.split ? { split: o.split } : {}),
            recipe: recipeFromCommand(command, recipe),
            ...(o.threads ? { threads: o.threads } : {}),
            ...(o.force ? { force: true } : {}),
            onProgress: (done, total, patches) => bar.update(done, total, { patches }),
          });
          bar.stop();
          const m = report.manifest;
          const size = m.preprocess.tiles.patchSize;
          print(o.json, report, () =>
            [
              `${report.reused ? 'already prepared' : 'prepared'} '${m.name}' in ${report.dir}: ${m.count} patches of ` +
                `${size}x${size} from ${m.images} images in ${report.seconds.toFixed(1)} s`,
              ...report.skipped.map((s) => `  skipped ${s.path}: ${s.reason}`),
            ].join('\n'),
          );
        } finally {
          bar.stop();
        }
      });
    });
}
