/**
 * The review loop in a real browser, with the Content-Security-Policy in force: a pathologist
 * reviews from a result page; under double reading the second reader sees neither the first's
 * review on the page nor its label in the queue until theirs is in, then both; an admin compares
 * a challenger on the reviewed cases, promotes it, and the next result names it; with a second
 * model served under another name, the upload page offers both and the result names the chosen.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser, Page } from 'playwright-core';

import type { PathotypeServer } from '../../src/serve/app.js';
import { setRequiredReaders } from '../../src/store/review-cases.js';
import { launchChromium, watchedPage } from '../browser.js';
import { championAndChallenger, PASSWORD } from './review-loop-fixtures.js';

describe('the review loop in a real browser', () => {
  let server: PathotypeServer | undefined;
  let browser: Browser | undefined;
  let address: string;
  let images: string;
  const cspChecks: string[][] = [];

  before(async () => {
    ({ server, images } = await championAndChallenger(
      [
        ['ada', 'admin'],
        ['paula', 'pathologist'],
        ['rita', 'pathologist'],
      ],
      { otherName: 'second-opinion' },
    ));
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
  });
  after(async () => {
    await browser?.close();
    await server?.app.close();
  });

  async function signedIn(name: string): Promise<Page> {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.goto(`${address}/login`);
    await page.getByLabel('User name').fill(name);
    await page.getByLabel('Password').fill(PASSWORD);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL(`${address}/`);
    return page;
  }

  async function uploaded(page: Page, file: string): Promise<string> {
    await page.goto(`${address}/`);
    await page.getByLabel('Choose an image…').setInputFiles(path.join(images, file));
    await page.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    return page.url();
  }

  async function reviewOnPage(page: Page, label: string, patient?: string, comment?: string): Promise<void> {
    await page.getByLabel('Diagnosis').selectOption(label);
    if (patient) await page.getByLabel('Patient id').fill(patient);
    if (comment) await page.getByLabel('Comment').fill(comment);
    await Promise.all([
      page.waitForEvent('load'),
      page.getByRole('button', { name: 'Record the review' }).click(),
    ]);
  }

  it('a pathologist reviews from a result page', async () => {
    const paula = await signedIn('paula');
    const url = await uploaded(paula, 'BLOB/0.png');
    assert.match((await paula.textContent('#atypicality')) ?? '', /training data/);
    await reviewOnPage(paula, 'BLOB', 'sj-05-4001', 'typical blobs');
    const reviews = (await paula.textContent('#reviews')) ?? '';
    assert.match(reviews, /BLOB by paula/);
    assert.match(reviews, /typical blobs/);
    const id = url.split('/').pop() ?? '';
    const stored = await server?.store.reviews.list({ caseId: id });
    assert.deepEqual(
      stored?.map((r) => `${r.reviewer}:${r.label}:${r.patient ?? ''}`),
      ['paula:BLOB:sj-05-4001'],
    );
  });

  it('the second reader does not see the first until theirs is in', async () => {
    assert.ok(server);
    await setRequiredReaders(server.store.db, 2);
    const paula = await signedIn('paula');
    const url = await uploaded(paula, 'CHECKER/2.png');
    await reviewOnPage(paula, 'STRIPES', 'sj-05-4002', 'first reading: stripes');
    assert.match((await paula.textContent('#reviews')) ?? '', /STRIPES by paula/);

    const rita = await signedIn('rita');
    await rita.goto(`${address}/reviews`);
    const row = rita.locator(`#queue tr[data-case="${url.split('/').pop() ?? ''}"]`);
    assert.match((await row.textContent()) ?? '', /needs a second reader/);
    assert.doesNotMatch((await rita.textContent('#queue')) ?? '', /paula|first reading/);
    await row.getByRole('link').click();
    await rita.waitForURL(url);
    const blind = (await rita.textContent('#reviews')) ?? '';
    assert.match(blind, /hidden until you record yours/);
    assert.doesNotMatch(blind, /paula|STRIPES|first reading/);
    await reviewOnPage(rita, 'CHECKER');
    const both = (await rita.textContent('#reviews')) ?? '';
    assert.match(both, /STRIPES by paula/);
    assert.match(both, /CHECKER by rita/);
    assert.match(both, /readers disagree/);
  });

  it('an admin promotes a challenger after its comparison, and the next result names it', async () => {
    const ada = await signedIn('ada');
    await ada.goto(`${address}/admin/models`);
    assert.equal(await ada.locator('#version-served\\@1').getAttribute('data-active'), 'true');
    assert.equal(
      await ada.getByRole('button', { name: 'Promote v2' }).count(),
      0,
      'not before its comparison',
    );
    await Promise.all([
      ada.waitForEvent('load', { timeout: 60_000 }),
      ada.getByRole('button', { name: 'Compare with the active version' }).click(),
    ]);
    assert.match(
      (await ada.textContent('.comparison')) ?? '',
      /served@2 .* against served@1|no reviewed case/,
    );
    await Promise.all([ada.waitForEvent('load'), ada.getByRole('button', { name: 'Promote v2' }).click()]);
    assert.equal(await ada.locator('#version-served\\@2').getAttribute('data-active'), 'true');
    assert.match(
      // One list per name served: this name's among them.
      (await ada.locator('.promotions').allTextContents()).join('\n'),
      /served@2 made active by ada \(was served@1\) after its comparison/,
    );

    const paula = await signedIn('paula');
    await uploaded(paula, 'STRIPES/4.png');
    assert.equal(await paula.locator('#answered-by').getAttribute('data-model'), 'served@2');
    assert.match((await paula.textContent('#answered-by')) ?? '', /served v2/);
  });

  it('with two models served, a pathologist chooses one on the upload page and the result names it', async () => {
    const paula = await signedIn('paula');
    await paula.goto(`${address}/`);
    const options = paula.locator('#model option');
    const names: (string | null)[] = [];
    for (let i = 0; i < (await options.count()); i++) names.push(await options.nth(i).getAttribute('value'));
    assert.deepEqual(names, ['served', 'second-opinion'], "the default name's first");
    await paula.getByLabel('Model').selectOption('second-opinion');
    await paula.getByLabel('Choose an image…').setInputFiles(path.join(images, 'STRIPES/4.png'));
    await paula.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    assert.equal(await paula.locator('#answered-by').getAttribute('data-model'), 'second-opinion@1');
  });

  it('met no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(cspChecks.flat(), []);
  });
});
