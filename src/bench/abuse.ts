/**
 * `pathotype bench abuse`: what hostile load does to a protected server (users and keys, as a
 * department sets one up), bounded in time and kept on loopback. Against one `pathotype serve`
 * child process with its own throw-away data folder: (1) an ordinary client's latency idle;
 * (2) the same client while N concurrent large uploads (each from its own key) arrive beside a
 * sign-in flood, with the server's peak RSS and its RSS once the load is over; (3) uploads
 * trickled a byte every 2 s from one key, when they end and what another user's upload gets
 * meanwhile; (4) M connections that trickle their headers from other loopback addresses; (5)
 * how long a failed sign-in takes for a known and an unknown name, before and after failures.
 */
import { randomBytes } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

import sharp from 'sharp';

import { LIMITS } from '../limits.js';
import { openStore } from '../store/open.js';
import { workspaceAt } from '../workspace.js';
import { peakRssMb, percentile, serverAddress, startServe, stopServe, syntheticField } from './serve.js';

export interface AbuseBenchOptions {
  /** The model package's folder. */
  model: string;
  /** A throw-away workspace for the server's data (removed afterwards). */
  workspace: string;
  uploads: number;
  uploadMegabytes: number;
  slowConnections: number;
  /** Uploads trickled from one key. */
  slowBodies: number;
  /** Concurrent sign-in loops during the large uploads. */
  signInLoops: number;
}

export interface AbuseBenchReport {
  options: AbuseBenchOptions;
  uploadBytes: number;
  idleLatencyMs: { p50: number; max: number };
  underUploads: {
    latencyMs: { p50: number; max: number };
    ratioToIdle: number;
    uploadStatuses: Record<string, number>;
    signInStatuses: Record<string, number>;
  };
  /** After the idle client's requests: the model loaded and one image predicted. */
  serverIdleRssMb: number;
  serverPeakRssMb: number;
  serverRssAfterMb: number;
  slowBodies: {
    statuses: Record<string, number>;
    endedSeconds: number;
    otherUserStatus: number;
    readyz: number;
  };
  slow: { opened: number; refusedAtOnce: number; allClosedSeconds: number; healthMaxMs: number };
  signInMs: { known: number; unknown: number; knownAfter: number; unknownAfter: number };
}

const PASSWORD = 'bench abuse password';

/** A noisy PNG of about `megabytes` MB (random bytes do not compress). */
async function largeUpload(megabytes: number): Promise<Buffer> {
  const side = Math.round(Math.sqrt((megabytes * 1e6) / 3));
  return sharp(randomBytes(side * side * 3), { raw: { width: side, height: side, channels: 3 } })
    .png({ compressionLevel: 1 })
    .toBuffer();
}

/** One request from a chosen loopback address; its status (0: no answer) and time. */
function post(
  url: string,
  body: Buffer | string,
  headers: Record<string, string>,
  localAddress = '127.0.0.1',
): Promise<{ ms: number; status: number }> {
  const t = performance.now();
  return new Promise((resolve) => {
    const request = http.request(url, { method: 'POST', headers, localAddress }, (response) => {
      response.resume();
      response.on('end', () => resolve({ ms: performance.now() - t, status: response.statusCode ?? 0 }));
    });
    request.on('error', () => resolve({ ms: performance.now() - t, status: 0 }));
    request.end(body);
  });
}

function count(statuses: Record<string, number>, status: number): void {
  statuses[String(status)] = (statuses[String(status)] ?? 0) + 1;
}

function summary(latencies: number[]): { p50: number; max: number } {
  const sorted = [...latencies].sort((a, b) => a - b);
  return { p50: percentile(sorted, 50), max: sorted.at(-1) ?? 0 };
}

async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)?.[1] ?? 0) / 1024;
}

/** Users and keys of a department: the ordinary client's, one per large upload, the trickler's. */
async function setUp(
  options: AbuseBenchOptions,
): Promise<{ ordinary: string; uploaders: string[]; trickler: string }> {
  const store = await openStore(workspaceAt(options.workspace).serveDir);
  try {
    const paula = await store.users.add('paula', 'pathologist', PASSWORD);
    const olga = await store.users.add('olga', 'pathologist', PASSWORD);
    const key = async (name: string, userId: string | null): Promise<string> =>
      (await store.keys.create({ name, userId, role: 'pathologist' })).key;
    const uploaders: string[] = [];
    for (let i = 0; i < options.uploads; i++) uploaders.push(await key(`uploader-${i}`, null));
    return { ordinary: await key('ordinary', olga.id), uploaders, trickler: await key('script', paula.id) };
  } finally {
    await store.close();
  }
}

/** Wrong passwords for a known and an unknown name, each loop from its own address, until `busy` ends. */
async function signInFlood(
  address: string,
  loops: number,
  busy: () => boolean,
): Promise<Record<string, number>> {
  const statuses: Record<string, number> = {};
  await Promise.all(
    Array.from({ length: loops }, async (_, i) => {
      const name = i % 2 ? 'paula' : 'pavla';
      while (busy()) {
        const { status } = await post(
          `${address}/login`,
          new URLSearchParams({ name, password: `wrong ${i}` }).toString(),
          { 'content-type': 'application/x-www-form-urlencoded' },
          `127.0.1.${10 + i}`,
        );
        count(statuses, status);
      }
    }),
  );
  return statuses;
}

/** Large uploads at once (each its own key) beside a sign-in flood, while the ordinary client posts. */
async function underLoad(
  address: string,
  keys: Awaited<ReturnType<typeof setUp>>,
  small: Buffer,
  big: Buffer,
  options: AbuseBenchOptions,
): Promise<AbuseBenchReport['underUploads']> {
  const url = `${address}/api/v1/predictions?filename=bench.png`;
  const headers = (key: string) => ({ 'content-type': 'image/png', authorization: `Bearer ${key}` });
  const uploadStatuses: Record<string, number> = {};
  let uploading = true;
  const uploads = Promise.all(
    keys.uploaders.map(async (key) => count(uploadStatuses, (await post(url, big, headers(key))).status)),
  ).finally(() => (uploading = false));
  const flood = signInFlood(address, options.signInLoops, () => uploading);
  const loaded: number[] = [];
  while (uploading) loaded.push((await post(url, small, headers(keys.ordinary))).ms);
  await uploads;
  return { latencyMs: summary(loaded), ratioToIdle: 0, uploadStatuses, signInStatuses: await flood };
}

/** A request whose headers arrive whole, then one body byte every 2 s; its status when it ends. */
function trickleBody(
  port: number,
  head: string,
  localAddress: string,
): { status: Promise<number>; stop: () => void } {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  socket.write(head);
  const drip = setInterval(() => socket.writable && socket.write('x'), 2000);
  const status = new Promise<number>((resolve) =>
    socket.on('close', () => {
      clearInterval(drip);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0));
    }),
  );
  return { status, stop: () => socket.destroy() };
}

/** Uploads trickled from one key; another user's upload and /readyz meanwhile. */
async function slowBodies(
  address: string,
  keys: Awaited<ReturnType<typeof setUp>>,
  small: Buffer,
  connections: number,
): Promise<AbuseBenchReport['slowBodies']> {
  const port = Number(new URL(address).port);
  const head =
    `POST /api/v1/predictions?filename=slow.png HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
    `Authorization: Bearer ${keys.trickler}\r\nContent-Type: image/png\r\nContent-Length: 40000000\r\n\r\n`;
  const started = performance.now();
  const slow = Array.from({ length: connections }, (_, i) =>
    trickleBody(port, head, `127.0.2.${1 + Math.floor(i / LIMITS.connectionsPerAddress)}`),
  );
  await new Promise((resolve) => setTimeout(resolve, 1000));
  const other = await post(`${address}/api/v1/predictions?filename=other.png`, small, {
    'content-type': 'image/png',
    authorization: `Bearer ${keys.ordinary}`,
  });
  const readyz = (await fetch(`${address}/readyz`).catch(() => undefined))?.status ?? 0;
  const deadline = setTimeout(() => slow.forEach((s) => s.stop()), LIMITS.bodyRateWindowMs * 3 + 10_000);
  const ended = await Promise.all(slow.map((s) => s.status));
  clearTimeout(deadline);
  const statuses: Record<string, number> = {};
  for (const status of ended) count(statuses, status);
  return {
    statuses,
    endedSeconds: (performance.now() - started) / 1000,
    otherUserStatus: other.status,
    readyz,
  };
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

async function slowHeaders(address: string, connections: number): Promise<AbuseBenchReport['slow']> {
  const port = Number(new URL(address).port);
  const started = performance.now();
  const slow = trickle(port, connections);
  const refusedAtOnce = await new Promise<number>((resolve) => setTimeout(() => resolve(slow.closed()), 500));
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
  return { opened: slow.sockets.length, refusedAtOnce, allClosedSeconds, healthMaxMs: healthMax };
}

/** The median time of a failed sign-in for a name, from a fresh address each time. */
async function signInTime(address: string, name: string, from: string, times = 5): Promise<number> {
  const ms: number[] = [];
  for (let i = 0; i < times; i++)
    ms.push(
      (
        await post(
          `${address}/login`,
          new URLSearchParams({ name, password: 'not the password' }).toString(),
          { 'content-type': 'application/x-www-form-urlencoded' },
          from,
        )
      ).ms,
    );
  return summary(ms).p50;
}

async function signInTimes(address: string): Promise<AbuseBenchReport['signInMs']> {
  const known = await signInTime(address, 'olga', '127.0.3.1');
  const unknown = await signInTime(address, 'olgx', '127.0.3.2');
  // The same addresses have now failed five times: the next answers are the back-off's.
  return {
    known,
    unknown,
    knownAfter: await signInTime(address, 'olga', '127.0.3.1'),
    unknownAfter: await signInTime(address, 'olgx', '127.0.3.2'),
  };
}

export async function runAbuseBench(options: AbuseBenchOptions): Promise<AbuseBenchReport> {
  const small = await syntheticField();
  const big = await largeUpload(options.uploadMegabytes);
  const keys = await setUp(options);
  const server = startServe(options.workspace, path.resolve(options.model));
  try {
    const address = await serverAddress(server);
    const url = `${address}/api/v1/predictions?filename=bench.png`;
    const idle: number[] = [];
    for (let i = 0; i < 5; i++)
      idle.push(
        (await post(url, small, { 'content-type': 'image/png', authorization: `Bearer ${keys.ordinary}` }))
          .ms,
      );
    const idleRss = await rssMb(server.pid ?? 0);
    const loaded = await underLoad(address, keys, small, big, options);
    const peak = await peakRssMb(server.pid ?? 0);
    await new Promise((resolve) => setTimeout(resolve, 3000));
    const after = await rssMb(server.pid ?? 0);
    const idleSummary = summary(idle);
    return {
      options,
      uploadBytes: big.length,
      idleLatencyMs: idleSummary,
      underUploads: { ...loaded, ratioToIdle: loaded.latencyMs.p50 / Math.max(1, idleSummary.p50) },
      serverIdleRssMb: idleRss,
      serverPeakRssMb: peak,
      serverRssAfterMb: after,
      slowBodies: await slowBodies(address, keys, small, options.slowBodies),
      slow: await slowHeaders(address, options.slowConnections),
      signInMs: await signInTimes(address),
    };
  } finally {
    await stopServe(server);
    await rm(options.workspace, { recursive: true, force: true });
  }
}

const listed = (statuses: Record<string, number>): string =>
  Object.entries(statuses)
    .map(([s, n]) => `${n}x ${s}`)
    .join(', ');

export function formatAbuseBench(r: AbuseBenchReport): string {
  const s = r.signInMs;
  return [
    `ordinary client idle: p50 ${r.idleLatencyMs.p50.toFixed(0)} ms (max ${r.idleLatencyMs.max.toFixed(0)} ms)`,
    `during ${r.options.uploads} concurrent ${(r.uploadBytes / 1e6).toFixed(1)} MB uploads and ${r.options.signInLoops} sign-in loops: p50 ${r.underUploads.latencyMs.p50.toFixed(0)} ms ` +
      `(${r.underUploads.ratioToIdle.toFixed(2)}x idle, max ${r.underUploads.latencyMs.max.toFixed(0)} ms); uploads answered ${listed(r.underUploads.uploadStatuses)}; sign-ins ${listed(r.underUploads.signInStatuses)}`,
    `server RSS: ${r.serverIdleRssMb.toFixed(0)} MB idle, peak ${r.serverPeakRssMb.toFixed(0)} MB, ${r.serverRssAfterMb.toFixed(0)} MB 3 s after the load`,
    `${r.options.slowBodies} uploads trickled from one key: ${listed(r.slowBodies.statuses)}, all ended after ${r.slowBodies.endedSeconds.toFixed(1)} s ` +
      `(at least ${LIMITS.bodyBytesPerSecond} B/s over ${LIMITS.bodyRateWindowMs / 1000} s); meanwhile another user's upload ${r.slowBodies.otherUserStatus}, /readyz ${r.slowBodies.readyz}`,
    `${r.slow.opened} trickling connections: ${r.slow.refusedAtOnce} closed at once (per-address cap), all closed after ` +
      `${r.slow.allClosedSeconds.toFixed(1)} s (header timeout ${LIMITS.headersTimeoutMs / 1000} s); /healthz meanwhile at most ${r.slow.healthMaxMs.toFixed(0)} ms`,
    `a failed sign-in, p50: known name ${s.known.toFixed(0)} ms, unknown ${s.unknown.toFixed(0)} ms; after five failures from the address: ${s.knownAfter.toFixed(0)} ms and ${s.unknownAfter.toFixed(0)} ms`,
  ].join('\n');
}
