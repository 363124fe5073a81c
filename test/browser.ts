/**
 * Headless Chromium for the browser tests: Debian's chromium through playwright-core (never a
 * downloaded browser), started with the flags this closed network needs, and pages that record
 * every Content-Security-Policy violation so a test can assert there is none.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';

import { chromium, type Browser, type Page } from 'playwright-core';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export async function launchChromium(): Promise<Browser> {
  assert.ok(existsSync(CHROMIUM), `${CHROMIUM} is missing: the test set-up installs Debian's chromium`);
  return chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

/** A new page and the CSP violations it meets (from the console, where Chromium reports them). */
export async function watchedPage(browser: Browser): Promise<{ page: Page; violations: string[] }> {
  const page = await browser.newPage();
  const violations: string[] = [];
  page.on('console', (message) => {
    if (/Content Security Policy/i.test(message.text())) violations.push(message.text());
  });
  return { page, violations };
}
