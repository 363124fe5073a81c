/** `pathotype evaluate`: a model on the held-out images of its patch store. */

import type { Command } from 'commander';

import { percent } from '../format.js';
import { evaluateModel } from '../evaluate/evaluate.js';
import { print, resolveModelDir, withCatalog } from './context.js';
import { choice } from './options.js';

export function registerEvaluate(program: Command): void {
  program
    .command('evaluate <model>')
    .description(
      'evaluate a model package on the held-out images of its patch store: metrics, JSON and an HTML report',
    )
    .option('--store <name>', 'patch store (default: the one it was trained on)')
    .option('--partition <name>', 'test or validation', choice(['test', 'validation'] as const), 'test')
    .option('--out <dir>', 'where evaluation.json and report.html go (default MODEL/evaluation)')
    .option('--bf16', 'bfloat16 autocast even without native bf16 (default: only where the CPU has it)')
    .option('--no-bf16', 'float32 throughout')
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
            ...(flags.bf16 !== undefined ? { bf16: flags.bf16 } : {}),
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
}
