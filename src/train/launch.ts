/**
 * The local data-parallel launcher (like torchrun): one training as N ranks in child processes
 * on this machine, each a `rank-worker` given the resolved configuration, meeting on a free
 * loopback port, the cores shared out between them. Rank 0 reports for the group and its result
 * comes back; when one rank fails, the others are stopped. The CLI (`train --nproc`) and the
 * pipeline (`run --nproc`) both call it.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { availableCores } from '../cpu.js';
import { PathotypeError } from '../errors.js';
import { startJsonProcess } from '../io/json-process.js';
import { freeLoopbackPort } from '../io/net.js';
import type { Workspace } from '../workspace.js';
import type { TrainConfig } from './config.js';
import type { TrainOptions, TrainResult } from './trainer.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'rank-worker.js');

/** What every rank is given: the same training, and where the group meets. */
export interface RankJob {
  workspace: string;
  config: TrainConfig;
  resume: TrainOptions['resume'];
  allowMissingPretrained: boolean;
  reference: boolean;
  worldSize: number;
  rendezvous: { host: string; port: number };
}

/**
 * The local ranks `--nproc N` asks for, or null when the training runs in this process (one
 * rank is this process): the one place that decides, for `train` and `run` alike.
 */
export function localRanks(nproc: number | undefined): number | null {
  return nproc !== undefined && nproc > 1 ? nproc : null;
}

export async function trainOnRanks(
  workspace: Workspace,
  config: TrainConfig,
  nproc: number,
  options: Pick<TrainOptions, 'resume' | 'allowMissingPretrained' | 'reference'> = {},
): Promise<TrainResult> {
  const port = await freeLoopbackPort();
  // Threads not set by the recipe: the usable cores shared between the ranks.
  const threads = config.threads > 0 ? config.threads : Math.max(1, Math.floor(availableCores() / nproc));
  const job: RankJob = {
    workspace: workspace.root,
    config: { ...config, threads },
    resume: options.resume ?? false,
    allowMissingPretrained: options.allowMissingPretrained ?? false,
    reference: options.reference ?? true,
    worldSize: nproc,
    rendezvous: { host: '127.0.0.1', port },
  };
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pathotype-ranks-'));
  const file = path.join(dir, 'job.json');
  writeFileSync(file, JSON.stringify(job));
  try {
    // Rank 0 speaks for the group; the others' output would repeat it, so theirs is kept for errors.
    const ranks = Array.from({ length: nproc }, (_, rank) =>
      startJsonProcess<TrainResult | null>([worker, file, String(rank)], {
        what: `training rank ${rank} of ${nproc}`,
        stderr: rank === 0 ? 'inherit' : 'capture',
      }),
    );
    const stopOthers = (failed: ChildProcess): void => {
      for (const { child } of ranks) if (child !== failed && child.exitCode === null) child.kill('SIGTERM');
    };
    const results = await Promise.all(
      ranks.map(({ child, result }) =>
        result.catch((cause: unknown) => {
          stopOthers(child);
          throw new PathotypeError('ERR_TRAIN', (cause as Error).message, { cause });
        }),
      ),
    );
    const result = results[0];
    if (!result) throw new PathotypeError('ERR_TRAIN', 'rank 0 reported no result');
    return result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
