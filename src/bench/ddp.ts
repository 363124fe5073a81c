/**
 * `pathotype bench ddp`: data-parallel training against one process on the same machine. One
 * process with T threads trains on a global batch; then W ranks with T/W threads each train on
 * the same global batch split between them (c10d, Gloo, loopback). Reports the global
 * patches/s of both, and the share of a rank's step spent in the gradient all-reduce and the
 * buffer broadcast.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { startJsonProcess } from '../io/json-process.js';
import { freeLoopbackPort } from '../io/net.js';

const worker = path.join(path.dirname(fileURLToPath(import.meta.url)), 'ddp-worker.js');

export interface DdpBenchOptions {
  architecture: string;
  threads: number;
  ranks: number;
  steps: number;
  batch: number;
  size: number;
}

export interface DdpRow {
  setup: string;
  patchesPerSecond: number;
  stepMs: number;
  syncMs: number;
}

interface WorkerResult {
  patchesPerSecond: number;
  stepMs: number;
  syncMs: number;
}

function runWorker(args: string[]): Promise<WorkerResult> {
  return startJsonProcess<WorkerResult>([worker, ...args], { what: 'a bench ddp worker' }).result;
}

export async function runDdpBench(
  o: DdpBenchOptions,
  onStage: (s: string) => void = () => undefined,
): Promise<DdpRow[]> {
  const common = (rank: number, world: number, port: number, threads: number): string[] =>
    [o.architecture, rank, world, port, threads, o.steps, o.batch, o.size].map(String);
  onStage(`1 process, ${o.threads} threads`);
  const single = await runWorker(common(0, 1, 0, o.threads));
  onStage(`${o.ranks} ranks, ${Math.max(1, Math.floor(o.threads / o.ranks))} thread(s) each`);
  const port = await freeLoopbackPort();
  const ranks = await Promise.all(
    Array.from({ length: o.ranks }, (_, r) =>
      runWorker(common(r, o.ranks, port, Math.max(1, Math.floor(o.threads / o.ranks)))),
    ),
  );
  const slowest = ranks.reduce((a, b) => (a.stepMs > b.stepMs ? a : b));
  return [
    { setup: `1 process, ${o.threads} threads`, ...single },
    { setup: `${o.ranks} ranks x ${Math.max(1, Math.floor(o.threads / o.ranks))} thread`, ...slowest },
  ];
}

export function formatDdpBench(o: DdpBenchOptions, rows: readonly DdpRow[]): string {
  return [
    `${o.architecture}, ${o.size}x${o.size} patches, global batch ${o.batch}, ${o.steps} timed steps`,
    '| setup | patches/s | step, ms | all-reduce and broadcast, ms per step | share of the step |',
    '| --- | ---: | ---: | ---: | ---: |',
    ...rows.map(
      (r) =>
        `| ${r.setup} | ${r.patchesPerSecond.toFixed(1)} | ${r.stepMs.toFixed(0)} | ${r.syncMs.toFixed(1)} | ${((r.syncMs / r.stepMs) * 100).toFixed(1)}% |`,
    ),
  ].join('\n');
}
