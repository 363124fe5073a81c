/**
 * `pathotype bench serve`: a bounded load test on loopback. Starts `pathotype serve` as a child
 * process, runs N concurrent clients posting one image for T seconds, and reports throughput,
 * p50/p95 latency, failed requests and the server's peak resident memory.
 */
import { spawn } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import sharp from 'sharp';

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
}

/** A 1388x1040 field of pink stroma and purple nuclei, the size of the original release's images. */
async function syntheticField(): Promise<Buffer> {
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

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? 0;
}

async function peakRssMb(pid: number): Promise<number> {
  try {
    const status = await readFile(`/proc/${pid}/status`, 'utf8');
    const match = /VmHWM:\s+(\d+) kB/.exec(status);
    return match ? Number(match[1]) / 1024 : 0;
  } catch {
    return 0;
  }
}

export async function runServeBench(options: ServeBenchOptions): Promise<ServeBenchReport> {
  const image = options.image ? await readFile(options.image) : await syntheticField();
  const meta = await sharp(image).metadata();
  const args = [
    path.join(root, 'bin/pathotype.js'),
    '-w',
    options.workspace,
    'serve',
    '--model',
    options.model,
    '--port',
    '0',
    '--max-waiting',
    String(Math.max(32, options.clients * 2)),
  ];
  if (options.bf16) args.push('--bf16');
  const server = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  try {
    const address = await new Promise<string>((resolve, reject) => {
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
    const url = `${address}/api/v1/predictions?filename=bench.png${options.scale ? `&scale=${options.scale}` : ''}`;
    const latencies: number[] = [];
    const statuses: Record<string, number> = {};
    const started = performance.now();
    const deadline = started + options.seconds * 1000;
    // Each client posts, waits for the answer, posts again, until the deadline: bounded in time.
    await Promise.all(
      Array.from({ length: options.clients }, async () => {
        while (performance.now() < deadline) {
          const t = performance.now();
          let status = 'network error';
          try {
            const response = await fetch(url, {
              method: 'POST',
              body: image,
              headers: { 'content-type': 'application/octet-stream' },
            });
            await response.arrayBuffer();
            status = String(response.status);
          } catch {
            // counted as a failure below
          }
          latencies.push(performance.now() - t);
          statuses[status] = (statuses[status] ?? 0) + 1;
        }
      }),
    );
    const elapsed = (performance.now() - started) / 1000;
    const rss = await peakRssMb(server.pid ?? 0);
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
    };
  } finally {
    server.kill('SIGTERM');
    await new Promise((resolve) => {
      if (server.exitCode !== null) resolve(undefined);
      else server.once('exit', resolve);
    });
  }
}

export function formatServeBench(r: ServeBenchReport): string {
  return [
    `${r.options.clients} clients for ${r.options.seconds} s, posting a ${r.imageSize} image (${(r.imageBytes / 1024).toFixed(0)} KiB) to model ${r.options.model}:`,
    `  requests ${r.requests}, ok ${r.ok}, failed ${r.failed} (${Object.entries(r.statuses)
      .map(([s, n]) => `${s}: ${n}`)
      .join(', ')})`,
    `  throughput ${r.throughputPerSecond.toFixed(2)} images/s; latency p50 ${r.latencyMs.p50.toFixed(0)} ms, p95 ${r.latencyMs.p95.toFixed(0)} ms, max ${r.latencyMs.max.toFixed(0)} ms`,
    `  server peak RSS ${r.serverPeakRssMb.toFixed(0)} MB`,
  ].join('\n');
}
