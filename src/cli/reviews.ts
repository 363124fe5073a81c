/**
 * `pathotype reviews export`: the cases pathologists reviewed on a server, as a labelled image
 * set that `data import` reads (store/review-export.ts says the layout).
 */
import path from 'node:path';

import type { Command } from 'commander';

import { ConfigError } from '../errors.js';
import { openStore } from '../store/open.js';
import { exportReviews, MANIFEST_FILE } from '../store/review-export.js';

export function registerReviews(program: Command, dataDirOf: (command: Command) => string): void {
  const reviews = program.command('reviews').description("pathologists' reviews of served cases");
  reviews
    .command('export')
    .description(
      'write reviewed images as CLASS/PATIENT_CASE.ext with manifest.csv (and reviewed slides as slides.csv: slide,patient,label), for data import',
    )
    .requiredOption('--out <dir>', 'folder to write')
    .option(
      '--database <url>',
      'the PostgreSQL database of a shared deployment (default: the workspace SQLite)',
    )
    .option('--since <time>', 'only reviews made at or after this ISO time')
    .option('--include-disagreements', "cases the readers disagree on, under the readers' most given label")
    .action(
      async (
        flags: { out: string; database?: string; since?: string; includeDisagreements?: boolean },
        command: Command,
      ) => {
        if (flags.since !== undefined && Number.isNaN(Date.parse(flags.since)))
          throw new ConfigError(`--since takes an ISO time (got '${flags.since}')`);
        const store = await openStore(dataDirOf(command), flags.database);
        try {
          const cases = await exportReviews(store, path.resolve(flags.out), {
            ...(flags.since ? { since: new Date(flags.since).toISOString() } : {}),
            includeDisagreements: flags.includeDisagreements ?? false,
          });
          const counts = new Map<string, number>();
          for (const c of cases) counts.set(c.status, (counts.get(c.status) ?? 0) + 1);
          for (const c of cases.filter((c) => c.status === 'missing-image'))
            process.stderr.write(`missing: ${c.caseKind} ${c.caseId} (its image was not kept)\n`);
          const summary = [...counts].map(([s, n]) => `${n} ${s}`).join(', ') || 'no reviews';
          process.stdout.write(`${summary}; ${path.join(flags.out, MANIFEST_FILE)}\n`);
        } finally {
          await store.close();
        }
      },
    );
}
