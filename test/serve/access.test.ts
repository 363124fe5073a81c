/**
 * Patient data behind accounts: every route Fastify registered refuses an anonymous request once
 * a user exists (or is declared open in access.ts), sessions, roles, CSRF, lockout, keys, the
 * audit, security headers and hostile credentials.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import Fastify from 'fastify';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import access, { isOpenRoute, OPEN_ROUTES } from '../../src/serve/access.js';
import { LOGIN_RATE } from '../../src/limits.js';
import { openStore } from '../../src/store/open.js';
import { repoRoot } from '../helpers.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';
import { login, ORIGIN, PASSWORD, type Browser } from './portal-session.js';

const ID = '00000000-0000-4000-8000-000000000000';

/** A URL for a route pattern: every parameter filled with something well-formed. */
function concrete(url: string): string {
  return url.replace(':id', ID).replace(':level', '0').replace(':tile', '0_0.jpeg').replace('*', 'x.js');
}

describe('access control', () => {
  let server: PathotypeServer;
  let png: Buffer;
  let fixture: Awaited<ReturnType<typeof trainedPackage>>;
  let dataDir: string;

  before(async () => {
    fixture = await trainedPackage();
    png = readFileSync(path.join(fixture.images, 'BLOB/0.png'));
    dataDir = tempDir();
    server = await buildServer({ modelDir: fixture.modelDir, dataDir });
    await server.store.users.add('ada', 'admin', PASSWORD);
    await server.store.users.add('paula', 'pathologist', PASSWORD);
    await server.store.users.add('victor', 'viewer', PASSWORD);
  });
  after(() => server.app.close());

  const upload = (browser: Browser, headers: Record<string, string> = {}) =>
    server.app.inject({
      method: 'POST',
      url: '/portal/predictions?filename=case.png',
      payload: png,
      headers: {
        'content-type': 'image/png',
        cookie: browser.cookie,
        origin: ORIGIN,
        'x-csrf-token': browser.csrf,
        ...headers,
      },
    });

  it('every registered route is declared open or refuses an anonymous request', async () => {
    assert.ok(server.routes.length > 30, `${server.routes.length} routes`);
    for (const url of [
      '/docs',
      '/openapi.json',
      '/api/v1/predictions',
      '/slides/:id/slide_files/:level/:tile',
    ])
      assert.ok(
        server.routes.some((r) => r.url === url),
        `${url} is registered`,
      );
    const leaks: string[] = [];
    for (const route of server.routes) {
      if (route.method === 'OPTIONS') continue;
      const open = isOpenRoute(route.method, route.url);
      assert.equal(route.access === 'open', open, `${route.method} ${route.url}`);
      if (open) continue;
      for (const accept of ['application/json', 'text/html']) {
        const response = await server.app.inject({
          method: route.method as 'GET',
          url: concrete(route.url),
          headers: { accept },
        });
        const refused =
          response.statusCode === 401 ||
          (response.statusCode === 302 && String(response.headers.location).startsWith('/login'));
        if (!refused) leaks.push(`${route.method} ${route.url} (${accept}): ${response.statusCode}`);
      }
    }
    assert.deepEqual(leaks, []);
    const open = new Set(server.routes.filter((r) => r.access === 'open').map((r) => `${r.method} ${r.url}`));
    for (const route of OPEN_ROUTES.filter((r) => !r.endsWith('*'))) assert.ok(open.has(route), route);
  });

  it('a route cannot open itself: only OPEN_ROUTES can', async () => {
    const app = Fastify({ logger: false });
    await app.register(access, { store: server.store, allowAnonymous: false });
    await app.after();
    assert.throws(
      () => app.get('/sneaky', { config: { access: 'open' } }, () => 'patient data'),
      /GET \/sneaky says access 'open' but is not in OPEN_ROUTES/,
    );
    await app.close();
  });

  it('pages redirect to the sign-in page, which returns to them; the API answers 401', async () => {
    const page = await server.app.inject({ url: `/cases/${ID}`, headers: { accept: 'text/html' } });
    assert.equal(page.statusCode, 302);
    assert.equal(page.headers.location, `/login?next=${encodeURIComponent(`/cases/${ID}`)}`);
    const api = await server.app.inject('/api/v1/predictions');
    assert.equal(api.statusCode, 401);
    assert.equal(api.json<{ error: { code: string } }>().error.code, 'ERR_UNAUTHORIZED');
    const loginPage = await server.app.inject('/login?next=/cases');
    assert.equal(loginPage.statusCode, 200);
    assert.match(loginPage.body, /name="next" value="\/cases"/);
    // A sign-in never sends anyone to another site.
    const away = await server.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
      payload: new URLSearchParams({
        name: 'victor',
        password: PASSWORD,
        next: '//evil.example/x',
      }).toString(),
    });
    assert.equal(away.headers.location, '/');
  });

  it('roles: a viewer sees results but cannot upload; a pathologist uploads and sees who is signed in', async () => {
    const paula = await login(server, 'paula');
    const created = await upload(paula);
    assert.equal(created.statusCode, 201, created.body);
    const id = created.json<{ id: string }>().id;
    const victor = await login(server, 'victor');
    const refused = await upload(victor);
    assert.equal(refused.statusCode, 403);
    assert.equal(refused.json<{ error: { code: string } }>().error.code, 'ERR_FORBIDDEN');
    const result = await server.app.inject({ url: `/cases/${id}`, headers: { cookie: victor.cookie } });
    assert.equal(result.statusCode, 200);
    assert.match(result.body, /Signed in as <strong id="signed-in">victor<\/strong> \(viewer\)/);
    assert.equal(result.headers['cache-control'], 'no-store');
    assert.equal(
      (await server.app.inject({ url: `/cases/${id}/image.png`, headers: { cookie: victor.cookie } }))
        .statusCode,
      200,
    );
    // The audit page is the admin's.
    assert.equal(
      (await server.app.inject({ url: '/admin/audit', headers: { cookie: victor.cookie } })).statusCode,
      403,
    );
    const ada = await login(server, 'ada');
    const audit = await server.app.inject({
      url: `/admin/audit?case=${id}`,
      headers: { cookie: ada.cookie },
    });
    assert.equal(audit.statusCode, 200);
    assert.match(audit.body, /paula/);
    assert.match(audit.body, /victor/);
  });

  it('a cross-site request with a valid session is refused; the same from the portal passes', async () => {
    const paula = await login(server, 'paula');
    const evil = await upload(paula, { origin: 'http://evil.example' });
    assert.equal(evil.statusCode, 403);
    assert.equal(evil.json<{ error: { code: string } }>().error.code, 'ERR_CSRF');
    const noToken = await upload(paula, { 'x-csrf-token': 'forged' });
    assert.equal(noToken.statusCode, 403);
    assert.equal(noToken.json<{ error: { code: string } }>().error.code, 'ERR_CSRF');
    assert.equal((await upload(paula)).statusCode, 201);
    // A sign-in posted from another site is refused too.
    const foreign = await server.app.inject({
      method: 'POST',
      url: '/login',
      headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'http://evil.example' },
      payload: new URLSearchParams({ name: 'paula', password: PASSWORD }).toString(),
    });
    assert.equal(foreign.statusCode, 403);
  });

  it('logout ends the session: the result URL then shows the sign-in page', async () => {
    const victor = await login(server, 'victor');
    const out = await server.app.inject({
      method: 'POST',
      url: '/logout',
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: victor.cookie, origin: ORIGIN },
      payload: `_csrf=${encodeURIComponent(victor.csrf)}`,
    });
    assert.equal(out.statusCode, 303);
    assert.equal(out.headers.location, '/login');
    const after = await server.app.inject({
      url: '/cases',
      headers: { cookie: victor.cookie, accept: 'text/html' },
    });
    assert.equal(after.statusCode, 302);
    assert.match(String(after.headers.location), /^\/login/);
  });

  it('five failures make that address wait, for a known and an unknown name alike; the owner signs in from elsewhere; an admin lifts it', async () => {
    // Issue 27: a lock on the account was an oracle (known names 429, unknown 401) and a weapon
    // (anyone locked anyone out). Now the name typed is throttled per address, known or not.
    const lena = await server.store.users.add('lena', 'viewer', PASSWORD);
    const attempt = (name: string, password: string, remoteAddress = '10.0.0.5') =>
      server.app.inject({
        method: 'POST',
        url: '/login',
        remoteAddress,
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
        payload: new URLSearchParams({ name, password }).toString(),
      });
    const answers = async (name: string, last: string) => {
      const out = [];
      for (let i = 0; i < 5; i++) out.push(await attempt(name, 'not the password'));
      out.push(await attempt(name, last));
      return out;
    };
    const known = await answers('lena', PASSWORD);
    const unknown = await answers('lana', 'not the password');
    assert.deepEqual(
      known.map((r) => r.statusCode),
      [401, 401, 401, 401, 401, 429],
    );
    for (const [i, answer] of known.entries()) {
      assert.match(
        answer.body,
        i < 5 ? /wrong user name or password/ : /too many failed sign-ins for this name from this address/,
      );
      const other = unknown[i];
      assert.equal(other?.statusCode, answer.statusCode, `attempt ${i + 1}`);
      assert.equal(
        other.body.replaceAll('lana', 'NAME'),
        answer.body.replaceAll('lena', 'NAME'),
        `attempt ${i + 1}`,
      );
    }
    // The owner, from an address that has not failed, signs in at once.
    assert.equal((await attempt('lena', PASSWORD, '10.0.0.6')).statusCode, 303);
    assert.equal((await attempt('lena', PASSWORD)).statusCode, 429, 'the failing address still waits');
    // An admin lifts the lock from the users page: the first address may sign in again.
    const admin = await login(server, 'ada');
    const usersPage = await server.app.inject({ url: '/admin/users', headers: { cookie: admin.cookie } });
    assert.equal(usersPage.statusCode, 200);
    assert.match(usersPage.body, new RegExp(`/admin/users/${lena.id}/unlock`));
    const lifted = await server.app.inject({
      method: 'POST',
      url: `/admin/users/${lena.id}/unlock`,
      payload: new URLSearchParams({ _csrf: admin.csrf }).toString(),
      headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: admin.cookie, origin: ORIGIN },
    });
    assert.equal(lifted.statusCode, 303, lifted.body);
    assert.equal((await attempt('lena', PASSWORD)).statusCode, 303);
  });

  it('keys: a user key carries its role or narrower, expired and revoked keys are refused', async () => {
    const victor = await server.store.users.find('victor');
    const { key: viewerKey } = await server.store.keys.create({
      name: 'victor-script',
      userId: victor?.id ?? null,
      role: 'viewer',
    });
    const headers = { authorization: `Bearer ${viewerKey}`, 'content-type': 'image/png' };
    assert.equal((await server.app.inject({ url: '/api/v1/predictions', headers })).statusCode, 200);
    assert.equal(
      (await server.app.inject({ method: 'POST', url: '/api/v1/predictions', headers, payload: png }))
        .statusCode,
      403,
    );
    const { key: expired } = await server.store.keys.create({
      name: 'old',
      role: 'pathologist',
      expiresAt: new Date(Date.now() - 1000).toISOString(),
    });
    assert.equal(
      (await server.app.inject({ url: '/api/v1/models', headers: { authorization: `Bearer ${expired}` } }))
        .statusCode,
      401,
    );
  });

  it('hostile credentials get a clean 4xx, store nothing, and the server keeps serving', async () => {
    const before = (await server.store.users.list()).length;
    const predictions = (await server.store.predictions.list({ limit: 1, offset: 0 })).total;
    const form = (fields: Record<string, string>) =>
      server.app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
        payload: new URLSearchParams(fields).toString(),
      });
    assert.equal((await form({ name: 'x'.repeat(10_000), password: PASSWORD })).statusCode, 400);
    assert.equal((await form({ name: 'ada', password: 'p'.repeat(100_000) })).statusCode, 413);
    assert.equal((await form({ name: "' OR 1=1 --", password: "' OR ''='" })).statusCode, 401);
    assert.equal((await form({ name: 'ada\u0000', password: PASSWORD })).statusCode, 401);
    assert.equal((await form({ name: '管理者', password: PASSWORD })).statusCode, 401);
    assert.equal((await form({ password: PASSWORD })).statusCode, 400);
    for (const authorization of [
      'Basic YWRhOnBhc3M=',
      'Bearer',
      'Bearer a b',
      'bearer pt_aaaaaaaaaaaaaaaa',
      `Bearer ${'x'.repeat(500)}`,
      'Bearer pt_\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9',
    ]) {
      const response = await server.app.inject({ url: '/api/v1/models', headers: { authorization } });
      assert.equal(response.statusCode, 401, authorization);
      assert.equal(response.json<{ error: { code: string } }>().error.code, 'ERR_UNAUTHORIZED');
    }
    const both = await server.app.inject({
      url: '/api/v1/models',
      headers: { authorization: 'Basic YWRhOnBhc3M=', 'x-api-key': 'pt_aaaaaaaaaaaaaaaa' },
    });
    assert.equal(both.statusCode, 401);
    // A forged or expired session cookie is no session.
    for (const cookie of [
      'pathotype_session=forged',
      'pathotype_session=abc.def',
      `pathotype_session=${'a'.repeat(5000)}`,
    ])
      assert.equal((await server.app.inject({ url: '/api/v1/models', headers: { cookie } })).statusCode, 401);
    const victor = await login(server, 'victor');
    await server.store.db.run('UPDATE sessions SET expires_at = ?', [
      new Date(Date.now() - 1000).toISOString(),
    ]);
    assert.equal(
      (await server.app.inject({ url: '/api/v1/models', headers: { cookie: victor.cookie } })).statusCode,
      401,
    );
    // Names an operator might give: over-long and odd ones are refused, any script is fine.
    await assert.rejects(server.store.users.add('x'.repeat(65), 'viewer', PASSWORD), { code: 'ERR_CONFIG' });
    await assert.rejects(server.store.users.add("robert'); DROP TABLE users;--", 'viewer', PASSWORD), {
      code: 'ERR_CONFIG',
    });
    await assert.rejects(server.store.users.add('short', 'viewer', 'short'), { code: 'ERR_CONFIG' });
    await server.store.users.add('Zoë-医生', 'viewer', PASSWORD);
    await login(server, 'Zoë-医生');
    assert.equal((await server.store.users.list()).length, before + 1);
    assert.equal((await server.store.predictions.list({ limit: 1, offset: 0 })).total, predictions);
    assert.equal((await server.app.inject('/healthz')).statusCode, 200);
  });

  it('security headers: a CSP with frame-ancestors, nosniff, a referrer policy', async () => {
    const response = await server.app.inject('/login');
    const csp = String(response.headers['content-security-policy']);
    assert.match(csp, /script-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    assert.doesNotMatch(csp, /script-src[^;]*unsafe-inline/);
    assert.equal(response.headers['x-content-type-options'], 'nosniff');
    assert.equal(response.headers['x-frame-options'], 'DENY');
    assert.equal(response.headers['referrer-policy'], 'same-origin');
    assert.equal(response.headers['strict-transport-security'], undefined, 'HSTS only over TLS');
  });

  it('disabling the last user and revoking every key leave every route closed', async () => {
    const dir = tempDir();
    const lonely = await buildServer({ modelDir: fixture.modelDir, dataDir: dir });
    try {
      assert.equal((await lonely.app.inject('/api/v1/models')).statusCode, 200, 'open before any user');
      await lonely.store.users.add('only', 'admin', PASSWORD);
      const { record } = await lonely.store.keys.create({ name: 'only-key', role: 'admin' });
      const browser = await login(lonely, 'only');
      await lonely.store.users.disable('only');
      await lonely.store.keys.revoke(record.id);
      assert.equal(
        (await lonely.app.inject({ url: '/', headers: { cookie: browser.cookie, accept: 'text/html' } }))
          .statusCode,
        302,
      );
      for (const url of ['/api/v1/models', '/api/v1/predictions', '/api/v1/slides', '/openapi.json'])
        assert.equal((await lonely.app.inject(url)).statusCode, 401, url);
      const again = await lonely.app.inject({
        method: 'POST',
        url: '/login',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
        payload: new URLSearchParams({ name: 'only', password: PASSWORD }).toString(),
      });
      assert.equal(again.statusCode, 401, 'a disabled user cannot sign in');
    } finally {
      await lonely.app.close();
    }
    // Only an explicit --allow-anonymous opens it.
    const opened = await buildServer({ modelDir: fixture.modelDir, dataDir: dir, allowAnonymous: true });
    try {
      assert.equal((await opened.app.inject('/api/v1/models')).statusCode, 200);
    } finally {
      await opened.app.close();
    }
  });

  it('sign-in attempts from one address are limited, counted in the database, with Retry-After', async () => {
    const limited = await buildServer({ modelDir: fixture.modelDir, dataDir: tempDir() });
    try {
      const codes: number[] = [];
      let last;
      for (let i = 0; i <= LOGIN_RATE.max; i++) {
        last = await limited.app.inject({
          method: 'POST',
          url: '/login',
          headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
          payload: new URLSearchParams({ name: `guess${i}`, password: 'wrong password' }).toString(),
        });
        codes.push(last.statusCode);
      }
      assert.deepEqual(codes.slice(0, -1), Array<number>(LOGIN_RATE.max).fill(401));
      assert.equal(last?.statusCode, 429);
      assert.equal(last.json<{ error: { code: string } }>().error.code, 'ERR_RATE_LIMITED');
      assert.ok(Number(last.headers['retry-after']) > 0);
      const [row] = await limited.store.db.query<{ hits: number }>('SELECT hits FROM rate_limits');
      assert.equal(row?.hits, LOGIN_RATE.max + 1);
    } finally {
      await limited.app.close();
    }
  });

  it('serves HTTPS directly with --tls-cert/--tls-key: HSTS, and a Secure session cookie', async () => {
    const dir = tempDir();
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=localhost',
        '-keyout',
        path.join(dir, 'key.pem'),
        '-out',
        path.join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    );
    const tls = {
      cert: readFileSync(path.join(dir, 'cert.pem')),
      key: readFileSync(path.join(dir, 'key.pem')),
    };
    const secure = await buildServer({ modelDir: fixture.modelDir, dataDir: dir, tls });
    try {
      await secure.store.users.add('tess', 'viewer', PASSWORD);
      const address = await secure.app.listen({ host: '127.0.0.1', port: 0 });
      assert.match(address, /^https:/);
      const answer = await new Promise<{ status: number; headers: Record<string, unknown> }>(
        (resolve, reject) => {
          const body = new URLSearchParams({ name: 'tess', password: PASSWORD }).toString();
          const request = httpsRequest(
            `${address}/login`,
            {
              method: 'POST',
              rejectUnauthorized: false,
              headers: { 'content-type': 'application/x-www-form-urlencoded', origin: address },
            },
            (response) => {
              response.resume();
              resolve({ status: response.statusCode ?? 0, headers: response.headers });
            },
          );
          request.on('error', reject);
          request.end(body);
        },
      );
      assert.equal(answer.status, 303);
      assert.match(String(answer.headers['strict-transport-security']), /max-age=31536000/);
      assert.match(String(answer.headers['set-cookie']), /; Secure/);
    } finally {
      await secure.app.close();
    }
  });

  it('the audit keeps every access, with user, case and time, through a kill -9', async () => {
    const dir = tempDir();
    {
      const store = await openStore(dir);
      await store.users.add('kim', 'pathologist', PASSWORD);
      await store.close();
    }
    const worker = path.join(repoRoot, 'dist/test/serve/pg-server-worker.js');
    const child = spawn(process.execPath, [worker, fixture.modelDir, dir, '', ''], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    try {
      const base = await new Promise<string>((resolve, reject) => {
        let text = '';
        child.stdout.on('data', (chunk: Buffer) => {
          text += chunk.toString();
          const match = /ready (\S+)/.exec(text);
          if (match?.[1]) resolve(match[1]);
        });
        child.on('exit', (code) => reject(new Error(`the server exited (${String(code)})`)));
      });
      const origin = base;
      const signIn = await fetch(`${base}/login`, {
        method: 'POST',
        redirect: 'manual',
        headers: { 'content-type': 'application/x-www-form-urlencoded', origin },
        body: new URLSearchParams({ name: 'kim', password: PASSWORD }).toString(),
      });
      assert.equal(signIn.status, 303);
      const cookie = (signIn.headers.get('set-cookie') ?? '').split(';')[0] ?? '';
      const page = await (await fetch(`${base}/`, { headers: { cookie } })).text();
      const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page)?.[1] ?? '';
      const created = await fetch(`${base}/portal/predictions?filename=kill.png`, {
        method: 'POST',
        headers: { 'content-type': 'image/png', cookie, origin, 'x-csrf-token': csrf },
        body: png,
      });
      assert.equal(created.status, 201);
      const { id } = (await created.json()) as { id: string };
      assert.equal((await fetch(`${base}/cases/${id}`, { headers: { cookie } })).status, 200);
      assert.equal((await fetch(`${base}/cases/${id}/image.png`, { headers: { cookie } })).status, 200);
      assert.equal((await fetch(`${base}/cases/${id}`)).status, 401, 'anonymous, refused and recorded');
      child.kill('SIGKILL');
      await new Promise((resolve) => child.once('close', resolve));
      const store = await openStore(dir);
      try {
        const entries = await store.audit.list({ caseId: id });
        const actions = entries.map((e) => `${e.actor} ${e.action} ${e.status}`).reverse();
        assert.deepEqual(actions, [
          'kim prediction.create 201',
          'kim prediction.read 200',
          'kim image.read 200',
          'anonymous prediction.read 401',
        ]);
        assert.ok(entries.every((e) => Date.now() - Date.parse(e.at) < 120_000 && e.address === '127.0.0.1'));
        // Append-only: the database refuses to change or delete an entry.
        await assert.rejects(store.db.run("UPDATE audit SET actor = 'nobody'"), /append-only/);
        await assert.rejects(store.db.run('DELETE FROM audit'), /append-only/);
      } finally {
        await store.close();
      }
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });
});
