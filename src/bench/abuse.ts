/**
 * `pathotype bench abuse`: what hostile load does to a server, bounded in time and kept on
 * loopback. Against one `pathotype serve` child process: (1) an ordinary client's latency idle;
 * (2) the same client while N concurrent large uploads arrive, with the server's peak RSS; (3)
 * M connections that trickle their headers from other loopback addresses (127.0.0.2 and up, a
 * cap's worth each), how long until the server has closed them all, and /healthz meanwhile.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';

import sharp from 'sharp';

import { LIMITS } from '../limits.js';
import { peakRssMb, percentile, serverAddress, startServe, stopServe, syntheticField } from './serve.js';

export interface AbuseBenchOptions {
  model: string;
  workspace: string;
  uploads: number;
  uploadMegabytes: number;
  slowConnections: number;
}

export interface AbuseBenchReport {
  options: AbuseBenchOptions;
  uploadBytes: number;
  idleLatencyMs: { p50: number; max: number };
  underUploads: {
    latencyMs: { p50: number; max: number };
    ratioToIdle: number;
    uploadStatuses: Record<string, number>;
  };
  serverPeakRssMb: number;
  slow: { opened: number; refusedAtOnce: number; allClosedSeconds: number; healthMaxMs: number };
}

/** A noisy PNG of about `megabytes` MB (random bytes do not compress). */
async function largeUpload(megabytes: number): Promise<Buffer> {
  const side = Math.round(Math.sqrt((megabytes * 1e6) / 3));
  return sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

async function timed(url: string, body: Buffer): Promise<{ ms: number; status: number }> {
  const t = performance.now();
  try {
    const response = await fetch(url, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/octet-stream' },
    });
    await response.arrayBuffer();
    return { ms: performance.now() - t, status: response.status };
  } catch {
    return { ms: performance.now() - t, status: 0 };
  }
}

function summary(latencies: number[]): { p50: number; max: number } {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), max: sorted.at(-1) ?? 0 };
}

/** Connections that send half a request line, then a byte a second, from 127.0.0.2 and up. */
function trickle(port: number, count: number): { sockets: net.Socket[]; closed: () => number } {
  let closed = 0;
  const sockets: net.Socket[] = [];
  for (let i = 0; i < count; i++) {
    const localAddress = `127.0.0.${2 + Math.floor(i / LIMITS.connectionsPerAddress)}`;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    socket.on('error', () => undefined);
    socket.on('close', () => closed++);
    socket.resume();
    socket.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
    const drip = setInterval(() => socket.writable && socket.write('X'), 1000);
    socket.on('close', () => clearInterval(drip));
    sockets.push(socket);
  }
  return { sockets, closed: () => closed };
}

export async function runAbuseBench(options: AbuseBenchOptions): Promise<AbuseBenchReport> {
  const small = await syntheticField();
  const big = await largeUpload(options.uploadMegabytes);
  const server = startServe(options.workspace, options.model);
  try {
    const address = await serverAddress(server);
    const url = `${address}/api/v1/predictions?filename=bench.png`;
    const idle: number[] = [];
    for (let i = 0; i < 5; i++) idle.push((await timed(url, small)).ms);
    // Large uploads at once, and the ordinary client posting as they arrive.
    const statuses: Record<string, number> = {};
    let uploading = true;
    const uploads = Promise.all(
      Array.from({ length: options.uploads }, async () => {
        const { status } = await timed(url, big);
        statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
      }),
    ).finally(() => (uploading = false));
    const loaded: number[] = [];
    while (uploading) loaded.push((await timed(url, small)).ms);
    await uploads;
    const rss = await peakRssMb(server.pid ?? 0);
    // Slow connections, while /healthz is asked every 250 ms.
    const port = Number(new URL(address).port);
    const started = performance.now();
    const slow = trickle(port, options.slowConnections);
    const refusedAtOnce = await new Promise<number>((resolve) =>
      setTimeout(() => resolve(slow.closed()), 500),
    );
    let healthMax = 0;
    const deadline = started + LIMITS.headersTimeoutMs + 20_000;
    while (slow.closed() < slow.sockets.length && performance.now() < deadline) {
      const t = performance.now();
      await fetch(`${address}/healthz`)
        .then((r) => r.arrayBuffer())
        .catch(() => undefined);
      healthMax = Math.max(healthMax, performance.now() - t);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
    const allClosedSeconds = (performance.now() - started) / 1000;
    for (const socket of slow.sockets) socket.destroy();
    const idleSummary = summary(idle);
    const loadedSummary = summary(loaded);
    return {
      options,
      uploadBytes: big.length,
      idleLatencyMs: idleSummary,
      underUploads: {
        latencyMs: loadedSummary,
        ratioToIdle: loadedSummary.p50 / Math.max(1, idleSummary.p50),
        uploadStatuses: statuses,
      },
      serverPeakRssMb: rss,
      slow: { opened: slow.sockets.length, refusedAtOnce, allClosedSeconds, healthMaxMs: healthMax },
    };
  } finally {
    await stopServe(server);
  }
}

export function formatAbuseBench(r: AbuseBenchReport): string {
  const statuses = Object.entries(r.underUploads.uploadStatuses)
    .map(([s, n]) => `${n}x ${s}`)
    .join(', ');
  return [
    `ordinary client idle: p50 ${r.idleLatencyMs.p50.toFixed(0)} ms (max ${r.idleLatencyMs.max.toFixed(0)} ms)`,
    `during ${r.options.uploads} concurrent ${(r.uploadBytes / 1e6).toFixed(1)} MB uploads: p50 ${r.underUploads.latencyMs.p50.toFixed(0)} ms ` +
      `(${r.underUploads.ratioToIdle.toFixed(2)}x idle, max ${r.underUploads.latencyMs.max.toFixed(0)} ms); uploads answered ${statuses}`,
    `server peak RSS: ${r.serverPeakRssMb.toFixed(0)} MB`,
    `${r.slow.opened} trickling connections: ${r.slow.refusedAtOnce} closed at once (per-address cap), all closed after ` +
      `${r.slow.allClosedSeconds.toFixed(1)} s (header timeout ${LIMITS.headersTimeoutMs / 1000} s); /healthz meanwhile at most ${r.slow.healthMaxMs.toFixed(0)} ms`,
  ].join('\n');
}
