/**
 * Every header the server reads, fuzzed over real sockets (so Node's own parser is in the
 * loop): control characters, garbage, non-ASCII bytes and huge values in each, on open, key,
 * session and form routes, directly and behind a trusted proxy. None may answer 500 or hang
 * (issue 27). And the server's origin comes from its configuration, never from Host.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';
import { login, ORIGIN, PASSWORD } from './portal-session.js';

/** The headers the server, Fastify or a plugin of it reads. */
const HEADERS = [
  'host',
  'origin',
  'referer',
  'cookie',
  'authorization',
  'x-api-key',
  'content-type',
  'accept',
  'user-agent',
  'x-file-name',
  'x-forwarded-for',
  'x-forwarded-host',
  'x-forwarded-proto',
  'range',
  'if-none-match',
  'if-modified-since',
  'x-csrf-token',
  'accept-language',
];

const VALUES = [
  '',
  ' ',
  'garbage',
  'not a url',
  'http://[::1',
  'http://',
  'null',
  'a\tb',
  '\u0001\u0002\u001b[2J',
  '\u007f',
  'é中文',
  '\u00ff\u00fe\u0000',
  '%00%0d%0a',
  '../../../etc/passwd',
  '*/*;q=nonsense',
  'Bearer ',
  ';;;,,,=',
  'bytes=99999999999-1',
  'x'.repeat(6000),
];

interface Route {
  name: string;
  lines: string[];
  body?: Buffer;
}

/** One request over a fresh socket; its status, or 0 when nothing came back in time. */
function send(port: number, route: Route, header: string, value: string): Promise<number> {
  const lines = route.lines.filter((l) => !l.toLowerCase().startsWith(`${header}:`));
  const [requestLine, ...rest] = lines;
  const head = [
    requestLine,
    ...(header === 'host' ? [] : [`Host: 127.0.0.1:${port}`]),
    ...rest,
    `${header}: ${value}`,
    'Connection: close',
    ...(route.body ? [`Content-Length: ${route.body.length}`] : []),
  ].join('\r\n');
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let answer = '';
    const timer = setTimeout(() => socket.destroy(), 10_000);
    socket.on('data', (chunk: Buffer) => (answer += chunk.toString('latin1')));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0));
    });
    socket.write(Buffer.from(`${head}\r\n\r\n`, 'latin1'));
    if (route.body) socket.write(route.body);
  });
}

async function fuzz(port: number, routes: readonly Route[], headers: readonly string[]): Promise<string[]> {
  const failures: string[] = [];
  for (const route of routes)
    for (const header of headers)
      for (const value of VALUES) {
        const status = await send(port, route, header, value);
        if (status === 0 || status >= 500)
          failures.push(
            `${route.name} ${header}: ${JSON.stringify(value.slice(0, 40))} -> ${status || 'no answer'}`,
          );
      }
  return failures;
}

describe('headers the server reads', () => {
  let fixture: Awaited<ReturnType<typeof trainedPackage>>;
  let server: PathotypeServer;
  let proxied: PathotypeServer;
  let routes: Route[];

  before(async () => {
    fixture = await trainedPackage();
    const png = readFileSync(path.join(fixture.images, 'BLOB/0.png'));
    server = await buildServer({ modelDir: fixture.modelDir, dataDir: fixture.dataDir });
    const paula = await server.store.users.add('paula', 'pathologist', PASSWORD);
    const key = (await server.store.keys.create({ name: 'fuzz', userId: paula.id, role: 'pathologist' })).key;
    const browser = await login(server, 'paula');
    const address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    const session = [`Cookie: ${browser.cookie}`, `Origin: ${address}`, `X-CSRF-Token: ${browser.csrf}`];
    routes = [
      { name: 'health', lines: ['GET /healthz HTTP/1.1'] },
      { name: 'static', lines: ['GET /static/portal/upload.js HTTP/1.1'] },
      { name: 'api', lines: ['GET /api/v1/predictions HTTP/1.1', `Authorization: Bearer ${key}`] },
      { name: 'page', lines: ['GET /cases HTTP/1.1', 'Accept: text/html', `Cookie: ${browser.cookie}`] },
      {
        name: 'cancel',
        lines: [
          'POST /slides/00000000-0000-4000-8000-000000000000/cancel HTTP/1.1',
          'Content-Type: application/x-www-form-urlencoded',
          ...session,
        ],
        body: Buffer.from(`_csrf=${encodeURIComponent(browser.csrf)}`),
      },
      {
        name: 'sign-in',
        lines: [
          'POST /login HTTP/1.1',
          'Content-Type: application/x-www-form-urlencoded',
          `Origin: ${address}`,
        ],
        body: Buffer.from('name=nobody&password=not%20the%20password'),
      },
      {
        name: 'upload',
        lines: [
          'POST /api/v1/predictions?filename=f.png HTTP/1.1',
          'Content-Type: image/png',
          `Authorization: Bearer ${key}`,
        ],
        body: png,
      },
    ];
    proxied = await buildServer({ modelDir: fixture.modelDir, dataDir: tempDir(), trustProxy: true });
    await proxied.store.users.add('paula', 'pathologist', PASSWORD);
    await proxied.app.listen({ host: '127.0.0.1', port: 0 });
  });
  after(async () => {
    await server.app.close();
    await proxied.app.close();
  });

  it('no header value makes any route answer 500 or hang', async () => {
    const address = server.app.server.address();
    assert.ok(address && typeof address === 'object');
    assert.deepEqual(await fuzz(address.port, routes, HEADERS), []);
    assert.equal((await server.app.inject('/healthz')).statusCode, 200);
  });

  it('behind a trusted proxy, its forwarded headers are parsed as defensively', async () => {
    const address = proxied.app.server.address();
    assert.ok(address && typeof address === 'object');
    const signIn: Route = {
      name: 'proxied sign-in',
      lines: [
        'POST /login HTTP/1.1',
        'Content-Type: application/x-www-form-urlencoded',
        'Origin: https://pathotype.example.org',
        'X-Forwarded-Host: pathotype.example.org',
        'X-Forwarded-Proto: https',
      ],
      body: Buffer.from(`name=paula&password=${encodeURIComponent(PASSWORD)}`),
    };
    const failures = await fuzz(
      address.port,
      [signIn, { name: 'proxied health', lines: ['GET /healthz HTTP/1.1'] }],
      ['host', 'origin', 'referer', 'x-forwarded-for', 'x-forwarded-host', 'x-forwarded-proto'],
    );
    assert.deepEqual(failures, []);
    // The proxy's headers name the origin: a sign-in from the page the proxy served passes (from
    // a client address the fuzz did not use up the sign-in rate of).
    const from = (proto: string): Route => ({
      ...signIn,
      lines: signIn.lines.map((l) => (l.startsWith('X-Forwarded-Proto') ? `X-Forwarded-Proto: ${proto}` : l)),
    });
    assert.equal(await send(address.port, from('https'), 'x-forwarded-for', '10.9.9.1'), 303);
    assert.equal(await send(address.port, from('http'), 'x-forwarded-for', '10.9.9.2'), 403);
  });

  it("takes the server's origin from configuration, never from Host", async () => {
    const configured = await buildServer({
      modelDir: fixture.modelDir,
      dataDir: tempDir(),
      publicOrigin: 'https://pathotype.example.org',
    });
    try {
      await configured.store.users.add('paula', 'pathologist', PASSWORD);
      const signIn = (origin: string, host: string) =>
        configured.app.inject({
          method: 'POST',
          url: '/login',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin, host },
          payload: new URLSearchParams({ name: 'paula', password: PASSWORD }).toString(),
        });
      // A page of evil.example cannot make its Host say it is this server.
      assert.equal((await signIn('http://evil.example', 'evil.example')).statusCode, 403);
      assert.equal((await signIn('https://pathotype.example.org', 'evil.example')).statusCode, 303);
      assert.equal((await signIn(ORIGIN, 'localhost:80')).statusCode, 403, 'only the configured origin');
      assert.equal((await signIn('https://pathotype.example.org', 'not a host')).statusCode, 400);
    } finally {
      await configured.app.close();
    }
    await assert.rejects(
      buildServer({ modelDir: fixture.modelDir, dataDir: tempDir(), publicOrigin: 'https://x.org/path' }),
      { code: 'ERR_CONFIG' },
    );
  });
});
