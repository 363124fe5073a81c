/**
 * The red team's second round as tests (issue 27): a `next` with control characters, a Referer
 * that is not a URL, and user names that pass for others.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';

import Fastify from 'fastify';

import { refererOrigin } from '../../src/serve/access.js';
import errorHandling from '../../src/serve/error-handler.js';
import { safeNext } from '../../src/serve/login-routes.js';
import { openStore, type ServerStore } from '../../src/store/open.js';
import { checkUserName, nameKey } from '../../src/store/users.js';
import { tempDir } from '../fixtures.js';

const PASSWORD = 'correct horse battery';

describe('sign-in redirects', () => {
  it('returns only to a path of this server without control characters', () => {
    assert.equal(safeNext('/slides/1?x=2'), '/slides/1?x=2');
    for (const bad of [
      '/a\r\nSet-Cookie: x=1',
      '/a\tb',
      '/a\nb',
      '/a\u0000',
      '/a\u007f',
      '/a\u0085b',
      '/a\u009b',
    ])
      assert.equal(safeNext(bad), '/', JSON.stringify(bad));
    for (const away of ['//evil.example', '/\\evil.example', 'https://evil.example', ''])
      assert.equal(safeNext(away), '/');
  });
});

describe('a garbage Referer', () => {
  it('names no origin instead of throwing', () => {
    assert.equal(refererOrigin('not a url'), '');
    assert.equal(refererOrigin('http://[::1'), '');
    assert.equal(refererOrigin(undefined), '');
    assert.equal(refererOrigin('http://localhost:80/page?x'), 'http://localhost');
  });
});

describe('user names', () => {
  let store: ServerStore;
  before(async () => {
    store = await openStore(tempDir());
  });
  after(async () => {
    await store.close();
  });

  it('are NFKC-normalised: full-width letters are the letters they stand for', () => {
    assert.equal(checkUserName('ａｄｍｉｎ'), 'admin');
    assert.equal(nameKey('ＡＤＭＩＮ'), 'admin');
  });

  it('refuse a Latin name with a Cyrillic or Greek look-alike in it', () => {
    assert.throws(() => checkUserName('\u0430dmin'), { code: 'ERR_CONFIG', message: /mixes Latin/ });
    assert.throws(() => checkUserName('r\u03bfot'), { code: 'ERR_CONFIG', message: /mixes Latin/ });
    // One script, or Latin beside a script that does not pass for it, is a name.
    assert.equal(checkUserName('\u0430\u0434\u043c\u0438\u043d'), '\u0430\u0434\u043c\u0438\u043d');
    assert.equal(checkUserName('Zoë-医生'), 'Zoë-医生');
  });

  it('are unique without regard to case or width', async () => {
    await store.users.add('Admin', 'admin', PASSWORD);
    await assert.rejects(store.users.add('admin', 'viewer', PASSWORD), {
      code: 'ERR_CONFIG',
      message: /already/,
    });
    await assert.rejects(store.users.add('ＡＤＭＩＮ', 'viewer', PASSWORD), { code: 'ERR_CONFIG' });
    await assert.rejects(store.users.add('\u0430dmin', 'viewer', PASSWORD), { code: 'ERR_CONFIG' });
    assert.equal((await store.users.list()).length, 1);
  });
});

describe('an unexpected failure', () => {
  it('answers 500 naming its request id, which the log line carries too', async () => {
    const app = Fastify({ logger: false });
    await app.register(errorHandling);
    app.get('/boom', () => {
      throw new Error('a bug');
    });
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string | Uint8Array): boolean =>
      written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()) > 0;
    try {
      const response = await app.inject('/boom');
      assert.equal(response.statusCode, 500);
      const { error } = response.json<{ error: { code: string; message: string } }>();
      assert.equal(error.code, 'ERR_INTERNAL');
      const id = /\(request ([^)]+)\)/.exec(error.message)?.[1];
      assert.ok(id, error.message);
      assert.ok(written.some((line) => line.includes(`request ${id}`) && line.includes('a bug')));
    } finally {
      process.stderr.write = write;
      await app.close();
    }
  });
});
