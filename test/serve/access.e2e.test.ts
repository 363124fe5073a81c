/**
 * Accounts in a real browser, with the Content-Security-Policy in force: sign in, upload, see
 * the result, sign out, and the back button and the result URL show the sign-in page; a viewer
 * cannot upload; after five wrong passwords the address waits, with a clear message.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser, Page } from 'playwright-core';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { launchChromium, watchedPage } from '../browser.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';

const PASSWORD = 'correct horse battery';

describe('accounts in a real browser', () => {
  let server: PathotypeServer | undefined;
  let browser: Browser | undefined;
  let address: string;
  let images: string;
  const cspChecks: string[][] = [];

  before(async () => {
    const fixture = await trainedPackage();
    images = fixture.images;
    server = await buildServer({ modelDir: fixture.modelDir, dataDir: tempDir() });
    await server.store.users.add('paula', 'pathologist', PASSWORD);
    await server.store.users.add('victor', 'viewer', PASSWORD);
    await server.store.users.add('lena', 'viewer', PASSWORD);
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.app.close();
  });

  async function page(): Promise<Page> {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    return page;
  }

  async function signIn(p: Page, name: string, password = PASSWORD): Promise<void> {
    await p.getByLabel('User name').fill(name);
    await p.getByLabel('Password').fill(password);
    await p.getByRole('button', { name: 'Sign in' }).click();
  }

  it('signs in, uploads, shows the result, signs out; back and the result URL then ask to sign in', async () => {
    const p = await page();
    await p.goto(`${address}/`);
    await p.waitForURL(/\/login\?next=/);
    await signIn(p, 'paula');
    await p.waitForURL(`${address}/`);
    assert.equal((await p.textContent('#signed-in'))?.trim(), 'paula');
    await p.getByLabel('Choose an image…').setInputFiles(path.join(images, 'STRIPES/4.png'));
    await p.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    const resultUrl = p.url();
    assert.ok((await p.textContent('#predicted'))?.trim());
    await p.getByRole('button', { name: 'Sign out' }).click();
    await p.waitForURL(/\/login$/);
    await p.goBack();
    await p.waitForLoadState();
    assert.match(p.url(), /\/login/, `back shows ${p.url()}`);
    assert.ok(await p.getByRole('button', { name: 'Sign in' }).isVisible());
    await p.goto(resultUrl);
    assert.match(p.url(), /\/login\?next=/);
    assert.equal(await p.locator('#predicted').count(), 0, 'no result without a session');
  });

  it('a viewer cannot upload: the page says why', async () => {
    const p = await page();
    await p.goto(`${address}/login`);
    await signIn(p, 'victor');
    await p.waitForURL(`${address}/`);
    await p.getByLabel('Choose an image…').setInputFiles(path.join(images, 'BLOB/0.png'));
    await p.locator('#status.error').waitFor({ timeout: 30_000 });
    assert.match((await p.textContent('#status')) ?? '', /needs the pathologist role/);
  });

  it('after five wrong passwords this address waits, with a clear message', async () => {
    const p = await page();
    await p.goto(`${address}/login`);
    for (let i = 0; i < 5; i++) {
      await signIn(p, 'lena', 'wrong password!');
      await p.locator('#login-error').waitFor();
      assert.match((await p.textContent('#login-error')) ?? '', /wrong user name or password/);
    }
    await signIn(p, 'lena');
    await p.locator('#login-error').waitFor();
    assert.match(
      (await p.textContent('#login-error')) ?? '',
      /too many failed sign-ins for this name from this address: try again in 1 min/,
    );
  });

  it('met no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(cspChecks.flat(), []);
  });
});
