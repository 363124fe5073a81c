/**
 * `pathotype bench busy`: training beside a competing load. For each OpenMP wait policy, a
 * training process runs alone (quiet), then beside a second training process of the same kind
 * (two 2-thread processes on the same cores), and the benchmark reports its throughput, the
 * slowdown against its quiet run, and the CPU time it spent per 1,000 patches (spinning threads
 * show up there). Each measured process is a fresh `node` started with that policy, since the
 * policy must be in place before libgomp starts.
 */
import type { ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { WAIT_POLICIES, type WaitPolicy } from '../cpu.js';
import { startJsonProcess } from '../io/json-process.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'train-worker.js');

export interface BusyBenchOptions {
  seconds: number;
  threads: number;
  policies: readonly WaitPolicy[];
  /** Rounds over all policies; each row reports the median round, so a noisy neighbour counts once. */
  repeats: number;
}

export const DEFAULT_BUSY_BENCH: BusyBenchOptions = {
  seconds: 20,
  threads: 2,
  policies: WAIT_POLICIES,
  repeats: 1,
};

export interface WorkerResult {
  policy: string;
  patches: number;
  seconds: number;
  patchesPerSecond: number;
  cpuSeconds: number;
}

export interface BusyRow {
  policy: WaitPolicy;
  quiet: WorkerResult;
  loaded: WorkerResult;
  /** Quiet throughput over loaded throughput. */
  slowdown: number;
}

function startWorker(
  policy: WaitPolicy,
  seconds: number,
  threads: number,
): { child: ChildProcess; done: Promise<WorkerResult> } {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    PATHOTYPE_WAIT_POLICY: policy,
    PATHOTYPE_THREADS: String(threads),
  };
  delete env.OMP_WAIT_POLICY;
  delete env.GOMP_SPINCOUNT;
  const { child, result } = startJsonProcess<WorkerResult>([worker, String(seconds)], {
    what: 'the training worker',
    env,
    stderr: 'capture',
  });
  return { child, done: result };
}

export async function runBusyBench(
  options: BusyBenchOptions,
  onStage: (stage: string) => void = () => undefined,
): Promise<BusyRow[]> {
  const rounds = new Map<WaitPolicy, { quiet: WorkerResult[]; loaded: WorkerResult[] }>(
    options.policies.map((p) => [p, { quiet: [], loaded: [] }]),
  );
  for (let round = 1; round <= options.repeats; round++) {
    for (const policy of options.policies) {
      const results = rounds.get(policy) as { quiet: WorkerResult[]; loaded: WorkerResult[] };
      onStage(`round ${round}, ${policy}: alone`);
      results.quiet.push(await startWorker(policy, options.seconds, options.threads).done);
      onStage(`round ${round}, ${policy}: beside a second training`);
      // The competitor starts first and outlives the measured run.
      const competitor = startWorker(policy, options.seconds * 2 + 30, options.threads);
      await new Promise((resolve) => setTimeout(resolve, 3000));
      results.loaded.push(await startWorker(policy, options.seconds, options.threads).done);
      competitor.child.kill('SIGTERM');
      await competitor.done.catch(() => undefined);
    }
  }
  return options.policies.map((policy) => {
    const { quiet, loaded } = rounds.get(policy) as { quiet: WorkerResult[]; loaded: WorkerResult[] };
    const q = median(quiet);
    const l = median(loaded);
    return { policy, quiet: q, loaded: l, slowdown: q.patchesPerSecond / l.patchesPerSecond };
  });
}

function median(results: WorkerResult[]): WorkerResult {
  const sorted = [...results].sort((a, b) => a.patchesPerSecond - b.patchesPerSecond);
  return sorted[Math.floor((sorted.length - 1) / 2)] as WorkerResult;
}

export function formatBusyBench(rows: readonly BusyRow[]): string {
  const cpu = (r: WorkerResult): string => ((r.cpuSeconds / r.patches) * 1000).toFixed(1);
  return [
    '| wait policy | alone, patches/s | beside a 2nd training, patches/s | slowdown | CPU s per 1,000 patches, alone / beside |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.policy} | ${r.quiet.patchesPerSecond.toFixed(1)} | ${r.loaded.patchesPerSecond.toFixed(1)} | ` +
        `${r.slowdown.toFixed(2)}x | ${cpu(r.quiet)} / ${cpu(r.loaded)} |`,
    ),
  ].join('\n');
}
