/**
 * Slow and greedy clients (issue 27): bodies trickled a byte at a time are answered 408 and
 * free their slot, one key cannot take every upload place, and a sign-in form trickled to the
 * server is cut off too. The server runs on loopback with a one-second rate window (the
 * default is LIMITS.bodyRateWindowMs).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { LIMITS } from '../../src/limits.js';
import { trainedPackage } from './model-fixture.js';

const PASSWORD = 'correct horse battery';
const WINDOW_MS = 1000;

interface Trickle {
  /** The status line's code, 0 when the socket closed without an answer. */
  status: Promise<number>;
  stop: () => void;
}

/** A request whose headers arrive whole and whose body then comes one byte every `everyMs`. */
function trickle(port: number, head: string, localAddress: string, everyMs = 400): Trickle {
  const socket = net.connect({ host: '127.0.0.1', port, localAddress });
  socket.on('error', () => undefined);
  let answer = '';
  socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
  socket.write(head);
  const drip = setInterval(() => socket.writable && socket.write('x'), everyMs);
  const status = new Promise<number>((resolve) =>
    socket.on('close', () => {
      clearInterval(drip);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0));
    }),
  );
  return { status, stop: () => socket.destroy() };
}

describe('slow and greedy clients', () => {
  let server: PathotypeServer;
  let address: string;
  let port: number;
  let png: Buffer;
  let greedyKey: string;
  let otherKey: string;

  before(async () => {
    const fixture = await trainedPackage();
    png = readFileSync(path.join(fixture.images, 'BLOB/0.png'));
    server = await buildServer({
      modelDir: fixture.modelDir,
      dataDir: fixture.dataDir,
      bodyRate: { bytesPerSecond: 64, windowMs: WINDOW_MS },
    });
    const paula = await server.store.users.add('paula', 'pathologist', PASSWORD);
    const olga = await server.store.users.add('olga', 'pathologist', PASSWORD);
    greedyKey = (await server.store.keys.create({ name: 'script', userId: paula.id, role: 'pathologist' }))
      .key;
    otherKey = (await server.store.keys.create({ name: 'qupath', userId: olga.id, role: 'pathologist' })).key;
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    port = Number(new URL(address).port);
  });
  after(() => server.app.close());

  const upload = (key: string): Promise<Response> =>
    fetch(`${address}/api/v1/predictions?filename=field.png`, {
      method: 'POST',
      body: png,
      headers: { 'content-type': 'image/png', authorization: `Bearer ${key}` },
    });

  it("34 trickled uploads from one key: the others get 429, the held ones 408; another user's upload is a 201", async () => {
    const head =
      `POST /api/v1/predictions?filename=slow.png HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Authorization: Bearer ${greedyKey}\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n`;
    const started = performance.now();
    const slow = Array.from({ length: 34 }, (_, i) =>
      trickle(port, head, `127.0.0.${2 + Math.floor(i / 16)}`),
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 300));
      const other = await upload(otherKey);
      assert.equal(other.status, 201, await other.text());
      assert.equal((await fetch(`${address}/readyz`)).status, 200);
      const statuses = await Promise.all(slow.map((s) => s.status));
      const seconds = (performance.now() - started) / 1000;
      const count = (code: number): number => statuses.filter((s) => s === code).length;
      assert.equal(count(429), 34 - LIMITS.uploadsPerClient, statuses.join(' '));
      assert.equal(count(408), LIMITS.uploadsPerClient, statuses.join(' '));
      assert.ok(
        seconds < (3 * WINDOW_MS) / 1000 + 2,
        `the trickled uploads ended after ${seconds.toFixed(1)} s`,
      );
    } finally {
      for (const s of slow) s.stop();
    }
    // Their places are free again: the same key uploads at once.
    const again = await upload(greedyKey);
    assert.equal(again.status, 201, await again.text());
    assert.equal(server.limiter.running + server.limiter.waiting, 0);
  });

  it('a sign-in form trickled to the server is answered 408 and closed', async () => {
    const head =
      `POST /login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\nname=paula&';
    const started = performance.now();
    const slow = trickle(port, head, '127.0.0.9', 700);
    const status = await slow.status;
    assert.equal(status, 408);
    assert.ok(performance.now() - started < 3 * WINDOW_MS + 2000);
  });

  it('sign-in forms from one address are capped while they are open', async () => {
    const head =
      `POST /login HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      'Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n';
    const slow = Array.from({ length: LIMITS.signInsPerAddress + 3 }, () =>
      trickle(port, head, '127.0.0.10', 300),
    );
    const statuses = await Promise.all(slow.map((s) => s.status));
    assert.equal(statuses.filter((s) => s === 429).length, 3, statuses.join(' '));
    assert.equal(statuses.filter((s) => s === 408).length, LIMITS.signInsPerAddress, statuses.join(' '));
  });
});
