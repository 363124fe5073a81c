/**
 * `pathotype bench serve`: a bounded load test on loopback. Starts `pathotype serve` as a child
 * process, runs N concurrent clients posting one image for T seconds, and reports throughput,
 * p50/p95 latency, failed requests and the server's peak resident memory.
 */
import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Readable } from 'node:stream';

import pg from 'pg';
import sharp from 'sharp';

import { ConfigError } from '../errors.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');

export interface ServeBenchOptions {
  model: string;
  workspace: string;
  clients: number;
  seconds: number;
  /** Image to post; a generated 1388x1040 H&E-like field when absent. */
  image?: string;
  scale?: number;
  bf16: boolean;
  /** Servers behind one database; the clients take turns between them. */
  instances: number;
  /** PostgreSQL URL shared by the instances (required for more than one). */
  database?: string;
  /** Kill the last instance with SIGKILL this many seconds in; its clients fail over to the others. */
  killAfter?: number;
}

export interface ServeBenchReport {
  options: ServeBenchOptions;
  imageBytes: number;
  imageSize: string;
  requests: number;
  ok: number;
  failed: number;
  statuses: Record<string, number>;
  throughputPerSecond: number;
  latencyMs: { p50: number; p95: number; max: number };
  serverPeakRssMb: number;
  /** With a database: records found for the accepted requests, and how many were duplicated or missing. */
  records?: { accepted: number; found: number; missing: number; duplicated: number };
}

/** A 1388x1040 field of pink stroma and purple nuclei, the size of the original release's images. */
export async function syntheticField(): Promise<Buffer> {
  const width = 1388;
  const height = 1040;
  const data = Buffer.alloc(width * height * 3);
  let seed = 7;
  const random = (): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return seed / 4294967296;
  };
  for (let i = 0; i < width * height; i++) {
    data[i * 3] = 200 + Math.floor(random() * 30);
    data[i * 3 + 1] = 120 + Math.floor(random() * 30);
    data[i * 3 + 2] = 170 + Math.floor(random() * 30);
  }
  for (let n = 0; n < 4000; n++) {
    const cx = Math.floor(random() * width);
    const cy = Math.floor(random() * height);
    for (let y = cy - 4; y <= cy + 4; y++) {
      for (let x = cx - 4; x <= cx + 4; x++) {
        if (x < 0 || y < 0 || x >= width || y >= height || (x - cx) ** 2 + (y - cy) ** 2 > 16) continue;
        data[(y * width + x) * 3] = 70;
        data[(y * width + x) * 3 + 1] = 50;
        data[(y * width + x) * 3 + 2] = 120;
      }
    }
  }
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

export async function peakRssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /VmHWM:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

/** `pathotype serve` on a free loopback port in a child process, with more arguments. */
export function startServe(
  workspace: string,
  model: string,
  extra: readonly string[] = [],
): ChildProcessByStdio<null, null, Readable> {
  return spawn(
    process.execPath,
    [
      path.join(root, 'bin/pathotype.js'),
      '-w',
      workspace,
      'serve',
      '--model',
      model,
      '--port',
      '0',
      ...extra,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
}

/** SIGTERM, and the exit awaited. */
export async function stopServe(server: ChildProcessByStdio<null, null, Readable>): Promise<void> {
  server.kill('SIGTERM');
  await new Promise((resolve) => {
    if (server.exitCode !== null || server.signalCode !== null) resolve(undefined);
    else server.once('exit', resolve);
  });
}

/** The address a started server announces on stderr. */
export function serverAddress(server: ChildProcessByStdio<null, null, Readable>): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error(`the server did not start: ${text}`)), 120_000);
    server.stderr.on('data', (chunk: Buffer) => {
      text += chunk.toString();
      const match = /at (http:\/\/[^\s]+)/.exec(text);
      if (match?.[1]) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    server.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the server exited (${code ?? 'signal'}): ${text}`));
    });
  });
}

export async function runServeBench(options: ServeBenchOptions): Promise<ServeBenchReport> {
  const image = options.image ? await readFile(options.image) : await syntheticField();
  const meta = await sharp(image).metadata();
  const args = ['--max-waiting', String(Math.max(32, options.clients * 2))];
  if (options.bf16) args.push('--bf16');
  if (options.database) args.push('--database', options.database);
  if (options.instances > 1 && !options.database)
    throw new ConfigError('more than one instance needs --database postgres://... to share their records');
  const servers = Array.from({ length: options.instances }, () =>
    startServe(options.workspace, options.model, args),
  );
  try {
    const addresses = await Promise.all(servers.map(serverAddress));
    const query = `/api/v1/predictions?filename=bench.png${options.scale ? `&scale=${options.scale}` : ''}`;
    const accepted: string[] = [];
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    const killer =
      options.killAfter !== undefined && servers.length > 1
        ? setTimeout(() => servers.at(-1)?.kill('SIGKILL'), options.killAfter * 1000)
        : undefined;
    // Each client posts, waits for the answer, posts again, until the deadline: bounded in time.
    await Promise.all(
      Array.from({ length: options.clients }, async (_, client) => {
        let target = client % addresses.length;
        while (performance.now() < deadline) {
          const url = `${addresses[target] ?? ''}${query}`;
          const t = performance.now();
          let status = 'network error';
          try {
            const response = await fetch(url, {
              method: 'POST',
              body: image,
              headers: { 'content-type': 'application/octet-stream' },
            });
            const body = (await response.json()) as { id?: string };
            status = String(response.status);
            if (response.status === 201 && body.id) accepted.push(body.id);
          } catch {
            // Counted as a failure below; the next request goes to the next instance.
            target = (target + 1) % addresses.length;
          }
          latencies.push(performance.now() - t);
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      }),
    );
    clearTimeout(killer);
    const elapsed = (performance.now() - started) / 1000;
    const rss = Math.max(...(await Promise.all(servers.map((s) => peakRssMb(s.pid ?? 0)))));
    const records = options.database ? await checkRecords(options.database, accepted) : undefined;
    latencies.sort((a, b) => a - b);
    const ok = statuses['201'] ?? 0;
    return {
      options,
      imageBytes: image.length,
      imageSize: `${meta.width ?? 0}x${meta.height ?? 0}`,
      requests: latencies.length,
      ok,
      failed: latencies.length - ok,
      statuses,
      throughputPerSecond: ok / elapsed,
      latencyMs: {
        p50: percentile(latencies, 50),
        p95: percentile(latencies, 95),
        max: latencies.at(-1) ?? 0,
      },
      serverPeakRssMb: rss,
      ...(records ? { records } : {}),
    };
  } finally {
    await Promise.all(servers.map(stopServe));
  }
}

/** Every accepted request's record, once: none lost, none written twice. */
async function checkRecords(
  database: string,
  accepted: readonly string[],
): Promise<{ accepted: number; found: number; missing: number; duplicated: number }> {
  const client = new pg.Client({ connectionString: database });
  await client.connect();
  try {
    const { rows } = await client.query<{ id: string; n: string }>(
      'SELECT id, COUNT(*) AS n FROM predictions WHERE id = ANY($1) GROUP BY id',
      [accepted],
    );
    const found = new Set(rows.map((r) => r.id));
    return {
      accepted: accepted.length,
      found: found.size,
      missing: accepted.filter((id) => !found.has(id)).length,
      duplicated: rows.filter((r) => Number(r.n) > 1).length + (accepted.length - new Set(accepted).size),
    };
  } finally {
    await client.end();
  }
}

export function formatServeBench(r: ServeBenchReport): string {
  return [
    `${r.options.clients} clients for ${r.options.seconds} s against ${r.options.instances} instance(s), posting a ${r.imageSize} image (${(r.imageBytes / 1024).toFixed(0)} KiB) to model ${r.options.model}:`,
    `  requests ${r.requests}, ok ${r.ok}, failed ${r.failed} (${Object.entries(r.statuses)
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ')})`,
    `  throughput ${r.throughputPerSecond.toFixed(2)} images/s; latency p50 ${r.latencyMs.p50.toFixed(0)} ms, p95 ${r.latencyMs.p95.toFixed(0)} ms, max ${r.latencyMs.max.toFixed(0)} ms`,
    `  server peak RSS ${r.serverPeakRssMb.toFixed(0)} MB${r.options.instances > 1 ? ` (the largest of ${r.options.instances} instances)` : ''}`,
    ...(r.records
      ? [
          `  records: ${r.records.found} of ${r.records.accepted} accepted requests in the database, ${r.records.missing} missing, ${r.records.duplicated} duplicated`,
        ]
      : []),
  ].join('\n');
}
