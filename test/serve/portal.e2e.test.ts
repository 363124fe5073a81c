import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { updateManifest } from '../../src/model/package.js';
import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { launchChromium, watchedPage } from '../browser.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';
import { milPackageFrom } from '../model-at-scale.js';

describe('web portal in a real browser', () => {
  let server: PathotypeServer | undefined;
  let browser: Browser | undefined;
  let address: string;
  let images: string;
  let modelDir: string;

  before(async () => {
    const fixture = await trainedPackage();
    images = fixture.images;
    modelDir = fixture.modelDir;
    server = await buildServer({ modelDir: fixture.modelDir, dataDir: fixture.dataDir });
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
  });
  const cspChecks: string[][] = [];
  after(async () => {
    await browser?.close();
    await server?.app.close();
  });

  it('uploads an image, shows the result with its heatmap, and reopens it from the history', async () => {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.goto(`${address}/`);
    assert.match((await page.textContent('body')) ?? '', /Research use only, not for diagnosis/);
    // The file picker is reachable by its label, as a keyboard or screen-reader user finds it.
    await page.getByLabel('Choose an image…').setInputFiles(path.join(images, 'STRIPES/4.png'));
    await page.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    const resultUrl = page.url();
    const predicted = (await page.textContent('#predicted'))?.trim();
    assert.ok(predicted && ['BLOB', 'CHECKER', 'STRIPES'].includes(predicted), `predicted ${predicted}`);
    assert.match((await page.textContent('body')) ?? '', /Vote shares/);
    const overlayLoaded = await page.$eval('#overlay', (img) => {
      const image = img as unknown as { complete: boolean; naturalWidth: number };
      return image.complete && image.naturalWidth > 0;
    });
    assert.ok(overlayLoaded, 'the heatmap overlay image loaded');
    // Hidden on screen, not only in the DOM: the stylesheet once overrode the attribute.
    const overlay = page.locator('#overlay');
    assert.equal(await overlay.isVisible(), true);
    await page.getByLabel('Show the patch heatmap').uncheck();
    assert.equal(await overlay.isVisible(), false, 'the overlay toggles off');
    await page.getByLabel('Show the patch heatmap').check();
    assert.equal(await overlay.isVisible(), true, 'and on again');
    assert.match(
      (await page.textContent('#scale-source')) ?? '',
      /^(none: this model tiles each image at its own scale|.* inferred from the image's size)/,
    );
    const verdict = (await page.textContent('#verdict .verdict'))?.trim();
    assert.match(
      verdict ?? '',
      /^(BLOB|CHECKER|STRIPES|uncertain \(leans \w+\)), \d+\.\d% (calibrated )?confidence/,
    );

    await page.goto(`${address}/cases`);
    const row = page.locator('tr', { has: page.getByRole('link', { name: '4.png' }) }).first();
    assert.equal(
      (await row.locator('.verdict').textContent())?.trim(),
      verdict,
      'the row says what its page says',
    );
    await page.getByRole('link', { name: '4.png' }).click();
    await page.waitForURL(resultUrl);
    assert.equal(
      (await page.textContent('#predicted'))?.trim(),
      predicted,
      'the reopened result is the same',
    );
    // The same field in the zoomable viewer, with its patch overlay on top.
    await page.getByRole('link', { name: 'Open in the zoomable viewer' }).click();
    await page.waitForURL(`${resultUrl}/viewer`);
    await page.waitForFunction(
      () => (globalThis as unknown as { pathotypeOverlay?: unknown }).pathotypeOverlay !== undefined,
      undefined,
      { timeout: 30_000 },
    );
    await page.close();
  });

  it('says plainly when the model does not answer, with its expected accuracy on new patients', async () => {
    assert.ok(browser);
    // The same model, calibrated by a cross-validation in which no confidence was good enough.
    const calibrated = path.join(tempDir(), 'calibrated');
    cpSync(modelDir, calibrated, { recursive: true });
    await updateManifest(calibrated, (m) => ({
      ...m,
      calibration: { temperature: 2, threshold: 1.01, target: 0.95 },
      metrics: {
        ...m.metrics,
        crossValidation: {
          imageAccuracy: 0.41,
          accuracyInterval: { low: 0.28, high: 0.54 },
          groups: 24,
          images: 295,
          coverage: 0,
          answeredAccuracy: null,
        },
      },
    }));
    const second = await buildServer({ modelDir: calibrated, dataDir: path.join(tempDir(), 'serve') });
    try {
      const url = await second.app.listen({ host: '127.0.0.1', port: 0 });
      const { page, violations } = await watchedPage(browser);
      cspChecks.push(violations);
      await page.goto(`${url}/`);
      assert.match(
        (await page.textContent('body')) ?? '',
        /expected on new patients: 41\.0% image accuracy \(95% CI 28\.0%–54\.0%\)/,
      );
      await page.getByLabel('Choose an image…').setInputFiles(path.join(images, 'BLOB/0.png'));
      await page.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
      assert.equal((await page.textContent('#predicted'))?.trim(), 'Uncertain: refer to a pathologist');
      assert.match((await page.textContent('#uncertain-detail')) ?? '', /leans to (BLOB|CHECKER|STRIPES)/);
      const verdict = (await page.textContent('#verdict .verdict'))?.trim() ?? '';
      assert.match(verdict, /^uncertain \(leans (BLOB|CHECKER|STRIPES)\), \d+\.\d% calibrated confidence$/);
      // The history row: the same verdict and calibrated confidence, never a vote share in its place.
      await page.goto(`${url}/cases`);
      assert.equal((await page.locator('tbody tr .verdict').first().textContent())?.trim(), verdict);
      // A white field is refused with its reason on the upload page.
      await page.goto(`${url}/`);
      const sharp = (await import('sharp')).default;
      const white = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#ffffff' } })
        .png()
        .toBuffer();
      await page
        .getByLabel('Choose an image…')
        .setInputFiles({ name: 'white.png', mimeType: 'image/png', buffer: white });
      await page.waitForSelector('#status.error');
      assert.match((await page.textContent('#status')) ?? '', /mostly empty/);
      await page.close();
    } finally {
      await second.app.close();
    }
  });

  it("shows a model's attention map: each patch's weight in the answer, as the API gives it", async () => {
    assert.ok(browser);
    const milDir = await milPackageFrom(modelDir, path.join(tempDir(), 'attention-model'));
    const second = await buildServer({ modelDir: milDir, dataDir: path.join(tempDir(), 'serve-mil') });
    try {
      const url = await second.app.listen({ host: '127.0.0.1', port: 0 });
      const { page, violations } = await watchedPage(browser);
      cspChecks.push(violations);
      await page.goto(`${url}/`);
      await page.getByLabel('Choose an image…').setInputFiles(path.join(images, 'CHECKER/2.png'));
      await page.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
      const id = page.url().split('/').at(-1) ?? '';
      const response = await page.request.get(`${url}/api/v1/predictions/${id}`);
      assert.equal(response.status(), 200);
      const { grid, rule } = (await response.json()) as {
        rule: string;
        grid: { cells: [number, number, number, number][]; attention?: number[] };
      };
      assert.equal(rule, 'attention');
      assert.ok(grid.attention && grid.attention.length === grid.cells.length);
      // The patch the model weighs most, and one it weighs least: their weights as the page shows them.
      const ranked = grid.attention.map((w, k) => ({ w, k })).sort((a, b) => b.w - a.w);
      const attentionMap = page.locator('#attention');
      assert.equal(await attentionMap.isVisible(), false, 'the attention map is off at first');
      await page.getByLabel('Show the attention map').check();
      assert.equal(await attentionMap.isVisible(), true);
      for (const { w, k } of [ranked[0], ranked.at(-1)].filter((r) => r !== undefined)) {
        const [col, row] = grid.cells[k] ?? [];
        const cell = page.locator(`#attention rect[data-col="${col}"][data-row="${row}"]`);
        assert.equal(Number(await cell.getAttribute('data-attention')), w);
        assert.equal(
          await cell.locator('title').textContent(),
          `patch ${col}, ${row}: attention ${(w * 100).toFixed(1)}%`,
        );
      }
      const top = ranked[0];
      assert.ok(top);
      assert.match(
        (await page.textContent('#top-attention')) ?? '',
        new RegExp(`patch ${grid.cells[top.k]?.[0]}, ${grid.cells[top.k]?.[1]}`),
      );
      await page.close();
    } finally {
      await second.app.close();
    }
  });

  it('has a favicon and names exactly the formats it takes', async () => {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    const icon = await page.request.get(`${address}/favicon.ico`);
    assert.equal(icon.status(), 200);
    assert.match(icon.headers()['content-type'] ?? '', /image\/svg\+xml/);
    await page.goto(`${address}/`);
    assert.match((await page.textContent('#drop')) ?? '', /Drop a TIFF, PNG, JPEG or WebP image here/);
    const accept = (await page.getAttribute('#file', 'accept')) ?? '';
    for (const type of ['image/tiff', 'image/png', 'image/jpeg', 'image/webp'])
      assert.ok(accept.includes(type), type);
    // A WebP, as named, is taken.
    const sharp = (await import('sharp')).default;
    const webp = await sharp(path.join(images, 'STRIPES/4.png')).webp({ lossless: true }).toBuffer();
    await page
      .getByLabel('Choose an image…')
      .setInputFiles({ name: 'field.webp', mimeType: 'image/webp', buffer: webp });
    await page.waitForURL(/\/cases\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    await page.close();
  });

  it('shows a clear error for a file that is not an image', async () => {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.goto(`${address}/`);
    await page
      .getByLabel('Choose an image…')
      .setInputFiles({ name: 'notes.png', mimeType: 'image/png', buffer: Buffer.from('not an image') });
    await page.waitForSelector('#status.error');
    assert.match((await page.textContent('#status')) ?? '', /not a readable image/);
    await page.close();
  });

  it('met no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(cspChecks.flat(), []);
  });
});
