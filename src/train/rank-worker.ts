/**
 * One rank of a local data-parallel training (started by `launch.ts`): joins the group, trains,
 * and, as rank 0, prints the result as JSON on stdout and its epochs on stderr.
 */
import { readFileSync } from 'node:fs';

import { ProcessGroup } from '../engine/distributed.js';
import { workspaceAt } from '../workspace.js';
import { epochLine } from './epoch-line.js';
import type { RankJob } from './launch.js';
import { train } from './trainer.js';

const job = JSON.parse(readFileSync(process.argv[2] ?? '', 'utf8')) as RankJob;
const rank = Number(process.argv[3]);
const group = await ProcessGroup.join({ rank, worldSize: job.worldSize, ...job.rendezvous });
const result = await train(workspaceAt(job.workspace), job.config, {
  resume: job.resume,
  allowMissingPretrained: job.allowMissingPretrained,
  reference: job.reference,
  group,
  ...(rank === 0
    ? {
        onEpoch: (e) => process.stderr.write(`${epochLine(e)}\n`),
        onNotice: (m) => process.stderr.write(`pathotype: ${m}\n`),
      }
    : {}),
});
process.stdout.write(`${JSON.stringify(rank === 0 ? result : null)}\n`);
