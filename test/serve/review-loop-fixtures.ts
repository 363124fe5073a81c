/** What the review loop's tests share: signing in as a browser does, and a server holding a champion and a challenger. */
import assert from 'node:assert/strict';
import { cpSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import type { Role } from '../../src/store/users.js';
import { trainedPackage } from './model-fixture.js';
import { tempDir } from '../fixtures.js';

export const ORIGIN = 'http://localhost:80';
export const PASSWORD = 'correct horse battery';

export interface SignedIn {
  cookie: string;
  csrf: string;
}

export async function signIn(server: PathotypeServer, name: string): Promise<SignedIn> {
  const response = await server.app.inject({
    method: 'POST',
    url: '/login',
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: ORIGIN },
    payload: new URLSearchParams({ name, password: PASSWORD, next: '/' }).toString(),
  });
  assert.equal(response.statusCode, 303, response.body);
  const session = response.cookies.find((c) => c.name === 'pathotype_session');
  assert.ok(session);
  const cookie = `pathotype_session=${session.value}`;
  const page = await server.app.inject({ url: '/', headers: { cookie } });
  const csrf = /<meta name="csrf-token" content="([^"]+)">/.exec(page.body)?.[1];
  assert.ok(csrf);
  return { cookie, csrf };
}

/** The headers of a state-changing request from a signed-in browser. */
export function sent(who: SignedIn): Record<string, string> {
  return { cookie: who.cookie, origin: ORIGIN, 'x-csrf-token': who.csrf };
}

/**
 * The next version of a package: the same network (so it answers alike), written again as a
 * retrained package is, with its version one up and a time of its own.
 */
export function nextVersion(modelDir: string): string {
  const dir = path.join(tempDir(), 'challenger');
  cpSync(modelDir, dir, { recursive: true });
  const file = path.join(dir, 'model.json');
  const manifest = JSON.parse(readFileSync(file, 'utf8')) as { version: number; createdAt: string };
  manifest.version += 1;
  manifest.createdAt = new Date(Date.parse(manifest.createdAt) + 60_000).toISOString();
  writeFileSync(file, JSON.stringify(manifest));
  return dir;
}

/** The same package under another name: a second model a server may offer beside the first. */
export function renamed(modelDir: string, name: string): string {
  const dir = path.join(tempDir(), name);
  cpSync(modelDir, dir, { recursive: true });
  const file = path.join(dir, 'model.json');
  writeFileSync(file, JSON.stringify({ ...(JSON.parse(readFileSync(file, 'utf8')) as object), name }));
  return dir;
}

/**
 * A server holding the pattern model as its active version and the next version as a
 * challenger, with these users; with `otherName`, the same package under that name too.
 */
export async function championAndChallenger(
  users: readonly (readonly [name: string, role: Role])[],
  options: { otherName?: string } = {},
): Promise<{ server: PathotypeServer; images: string }> {
  const fixture = await trainedPackage();
  const server = await buildServer({
    modelDir: fixture.modelDir,
    moreModelDirs: [
      nextVersion(fixture.modelDir),
      ...(options.otherName ? [renamed(fixture.modelDir, options.otherName)] : []),
    ],
    dataDir: tempDir(),
  });
  for (const [name, role] of users) await server.store.users.add(name, role, PASSWORD);
  return { server, images: fixture.images };
}
