/** Signing in to the portal in server tests: the session cookie and the page's CSRF token. */
import assert from 'node:assert/strict';

import type { PathotypeServer } from '../../src/serve/app.js';

/** The origin inject's requests come from (its Host is localhost:80). */
export const ORIGIN = 'http://localhost:80';
export const PASSWORD = 'correct horse battery';

export interface Browser {
  cookie: string;
  csrf: string;
}

export async function login(server: PathotypeServer, name: string, password = PASSWORD): Promise<Browser> {
  const response = await server.app.inject({
    method: 'POST',
    url: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
    payload: new URLSearchParams({ name, password, next: '/' }).toString(),
  });
  assert.equal(response.statusCode, 303, response.body);
  const session = response.cookies.find((c) => c.name === 'pathotype_session');
  assert.ok(session, 'a session cookie');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  const cookie = `pathotype_session=${session.value}`;
  const page = await server.app.inject({ url: '/', headers: { cookie } });
  assert.equal(page.statusCode, 200);
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page.body)?.[1];
  assert.ok(csrf, 'the page carries a CSRF token');
  return { cookie, csrf };
}
