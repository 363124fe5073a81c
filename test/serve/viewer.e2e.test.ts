import assert from 'node:assert/strict';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import type { Browser } from 'playwright-core';

import { classColour } from '../../src/predict/heatmap.js';
import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { launchChromium, watchedPage } from '../browser.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { fieldsOf, writeDeclaredHugeTiff, writeTestSlide, type TestSlide } from '../slide-fixtures.js';
import { slideScalePackage } from './model-fixture.js';
import { milPackageFrom } from '../model-at-scale.js';

interface Feature {
  geometry: { coordinates: [number, number][][] };
  properties: { classification: { name: string } };
}

describe('the slide viewer in a real browser', { skip: !hasShared(lymphomaDir) && 'needs ../shared' }, () => {
  let server: PathotypeServer | undefined;
  let browser: Browser | undefined;
  let address: string;
  let slide: TestSlide;
  let jobId: string;

  before(async () => {
    const model = await slideScalePackage();
    const root = tempDir();
    // Large enough for a Deep Zoom pyramid of several levels: 6 x 4 fields, 2502 x 1248 px.
    slide = await writeTestSlide(
      path.join(root, 'viewer.tif'),
      [...fieldsOf('CLL', 8), ...fieldsOf('MCL', 8), ...fieldsOf('FL', 6), null, null],
      { across: 6, compression: 'jpeg' },
    );
    server = await buildServer({ ...model, slideRoot: root });
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'viewer.tif' },
    });
    jobId = created.json<{ id: string }>().id;
    await server.slidesIdle();
    address = await server.app.listen({ host: '127.0.0.1', port: 0 });
    browser = await launchChromium();
  });
  const cspChecks: string[][] = [];
  after(async () => {
    await browser?.close();
    await server?.app.close();
  });

  it('zooms from the whole slide to full resolution with the class overlay on the tiles it belongs to', async () => {
    assert.ok(browser && server);
    const features = (await server.app.inject(`/api/v1/slides/${jobId}/geojson`)).json<{
      features: Feature[];
    }>().features;
    const classes = server.predictor.classes;
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.setViewportSize({ width: 1280, height: 900 });
    const tileRequests: string[] = [];
    page.on('request', (r) => {
      if (r.url().includes('/slide_files/')) tileRequests.push(r.url());
    });
    await page.goto(`${address}/slides/${jobId}`);
    assert.match((await page.textContent('#answer')) ?? '', /Vote shares of the tiles/);
    // The slides list says what the viewer says: the same verdict and calibrated confidence.
    const verdict = (await page.textContent('#verdict .verdict'))?.trim() ?? '';
    assert.match(verdict, /\d+\.\d% (calibrated )?confidence/);
    await page.goto(`${address}/slides`);
    const row = page.locator('tr', { has: page.locator(`a[href="/slides/${jobId}"]`) });
    assert.equal((await row.locator('.verdict').textContent())?.trim(), verdict);
    await page.goto(`${address}/slides/${jobId}`);
    assert.match((await page.textContent('.legend')) ?? '', /BLOB.*CHECKER.*STRIPES/);
    await page.waitForFunction(
      () => (globalThis as unknown as { pathotypeOverlay?: unknown }).pathotypeOverlay !== undefined,
    );

    // Full resolution: one screen pixel per slide pixel, centred on a tile; every tile loaded.
    const dzLevels = Math.ceil(Math.log2(Math.max(slide.width, slide.height))) + 1;
    for (const k of [0, Math.floor(features.length / 2), features.length - 1]) {
      const feature = features[k];
      assert.ok(feature);
      const ring = feature.geometry.coordinates[0] ?? [];
      const [x0, y0] = ring[0] ?? [0, 0];
      const [x1, y1] = ring[2] ?? [0, 0];
      const centre = { x: (x0 + x1) / 2, y: (y0 + y1) / 2 };
      const colour = await page.evaluate(async (c) => {
        type Item = {
          imageToViewportCoordinates(x: number, y: number): unknown;
          imageToViewportZoom(z: number): number;
          setOpacity(o: number): void;
          getFullyLoaded(): boolean;
        };
        const w = globalThis as unknown as {
          pathotypeViewer: {
            world: { getItemAt(i: number): Item };
            viewport: {
              zoomTo(z: number, p?: unknown, immediately?: boolean): void;
              panTo(p: unknown, immediately?: boolean): void;
              viewportToViewerElementCoordinates(p: unknown): { x: number; y: number };
            };
            drawer: {
              canvas: {
                getContext(kind: '2d'): {
                  getImageData(x: number, y: number, w: number, h: number): { data: ArrayLike<number> };
                } | null;
              };
            };
            forceRedraw(): void;
          };
          pathotypeOverlay: Item;
        };
        const viewer = w.pathotypeViewer;
        const base = viewer.world.getItemAt(0);
        const point = base.imageToViewportCoordinates(c.x, c.y);
        // Two screen pixels per slide pixel: past full resolution, so the top level is read.
        viewer.viewport.zoomTo(base.imageToViewportZoom(2), undefined, true);
        viewer.viewport.panTo(point, true);
        // Read the overlay alone at the tile's centre.
        base.setOpacity(0);
        w.pathotypeOverlay.setOpacity(1);
        await new Promise((r) => setTimeout(r, 500));
        for (let i = 0; i < 100 && !(base.getFullyLoaded() && w.pathotypeOverlay.getFullyLoaded()); i++)
          await new Promise((r) => setTimeout(r, 100));
        viewer.forceRedraw();
        await new Promise((r) => setTimeout(r, 300));
        const at = viewer.viewport.viewportToViewerElementCoordinates(point);
        const ratio = (globalThis as unknown as { devicePixelRatio?: number }).devicePixelRatio ?? 1;
        const pixel = viewer.drawer.canvas
          .getContext('2d')
          ?.getImageData(Math.round(at.x * ratio), Math.round(at.y * ratio), 1, 1).data;
        base.setOpacity(1);
        return pixel ? Array.from(pixel) : [];
      }, centre);
      const expected = classColour(classes.indexOf(feature.properties.classification.name));
      assert.ok(
        colour.length === 4 &&
          (colour[3] ?? 0) > 0 &&
          expected.every((v, i) => Math.abs(v - (colour[i] ?? 0)) <= 12),
        `tile ${k} at (${centre.x}, ${centre.y}): overlay ${JSON.stringify(colour)}, class colour ${JSON.stringify(expected)}`,
      );
    }
    // Full-resolution tiles of the slide were read from the top Deep Zoom level.
    if (!tileRequests.some((u) => u.includes(`/slide_files/${dzLevels - 1}/`)))
      await page.waitForRequest((r) => r.url().includes(`/slide_files/${dzLevels - 1}/`), {
        timeout: 20_000,
      });
    // The overlay toggles off and on.
    await page.uncheck('#show-overlay');
    assert.equal(
      await page.evaluate(() =>
        (
          globalThis as unknown as { pathotypeOverlay: { getOpacity(): number } }
        ).pathotypeOverlay.getOpacity(),
      ),
      0,
    );
    await page.check('#show-overlay');
    await page.fill('#opacity', '30');
    await page.dispatchEvent('#opacity', 'input');
    assert.equal(
      await page.evaluate(() =>
        (
          globalThis as unknown as { pathotypeOverlay: { getOpacity(): number } }
        ).pathotypeOverlay.getOpacity(),
      ),
      0.3,
    );
  });

  it("shows a model's attention map over the slide, off until asked for", async () => {
    assert.ok(browser);
    const model = await slideScalePackage();
    const milDir = await milPackageFrom(model.modelDir, path.join(tempDir(), 'slide-mil'));
    const root = path.dirname(slide.file);
    const second = await buildServer({
      modelDir: milDir,
      dataDir: path.join(tempDir(), 'serve-mil'),
      slideRoot: root,
    });
    try {
      const created = await second.app.inject({
        method: 'POST',
        url: '/api/v1/slides',
        payload: { path: 'viewer.tif' },
      });
      const id = created.json<{ id: string }>().id;
      await second.slidesIdle();
      const geojson = (await second.app.inject(`/api/v1/slides/${id}/geojson`)).json<{
        features: { properties: { measurements: Record<string, number> } }[];
      }>();
      const weights = geojson.features.map((f) => f.properties.measurements.Attention ?? NaN);
      assert.ok(
        Math.abs(weights.reduce((a, b) => a + b, 0) - 1) < 0.01,
        'every tile its weight; they sum to 1',
      );
      assert.equal((await second.app.inject(`/api/v1/slides/${id}/attention.png`)).statusCode, 200);
      const url = await second.app.listen({ host: '127.0.0.1', port: 0 });
      const { page, violations } = await watchedPage(browser);
      cspChecks.push(violations);
      const attentionTiles: string[] = [];
      page.on('request', (r) => {
        if (r.url().includes('/attention_files/')) attentionTiles.push(r.url());
      });
      await page.goto(`${url}/slides/${id}`);
      await page.waitForFunction(
        () => (globalThis as unknown as { pathotypeAttention?: unknown }).pathotypeAttention !== undefined,
      );
      const opacity = (): Promise<number> =>
        page.evaluate(() =>
          (
            globalThis as unknown as { pathotypeAttention: { getOpacity(): number } }
          ).pathotypeAttention.getOpacity(),
        );
      assert.equal(await opacity(), 0, 'off at first');
      await page.getByLabel('Attention map').check();
      assert.equal(await opacity(), 0.6);
      if (attentionTiles.length === 0)
        await page.waitForRequest((r) => r.url().includes('/attention_files/'), { timeout: 30_000 });
      await page.close();
    } finally {
      await second.app.close();
    }
  });

  it('takes a slide from the portal: streamed into the queue, then its viewer and its row agree', async () => {
    assert.ok(browser);
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.goto(`${address}/slides`);
    await page.setInputFiles('#slide-file', slide.file);
    await page.fill('#slide-mpp', '1.0667');
    await page.click('#submit-slide');
    await page.waitForURL(/\/slides\/[0-9a-f-]{36}$/, { timeout: 60_000 });
    const id = page.url().split('/').at(-1) ?? '';
    // The page reloads itself while the job runs.
    await page.waitForSelector('#verdict .verdict', { timeout: 120_000 });
    const verdict = (await page.textContent('#verdict .verdict'))?.trim();
    await page.goto(`${address}/slides`);
    const row = page.locator('tr', { has: page.locator(`a[href="/slides/${id}"]`) });
    assert.equal((await row.locator('.verdict').textContent())?.trim(), verdict);
    await page.close();
  });

  it("stops a job from its viewer's Cancel button", async () => {
    assert.ok(browser && server);
    // A slide declared 20,000 px square: its job runs long enough to be cancelled.
    writeDeclaredHugeTiff(path.join(path.dirname(slide.file), 'slow.tif'), 20_000, 20_000);
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/v1/slides',
      payload: { path: 'slow.tif' },
    });
    assert.equal(created.statusCode, 202, created.body);
    const id = created.json<{ id: string }>().id;
    const { page, violations } = await watchedPage(browser);
    cspChecks.push(violations);
    await page.goto(`${address}/slides/${id}`);
    await page.click('#cancel');
    await page.locator('#progress-text', { hasText: 'cancelled' }).waitFor({ timeout: 20_000 });
    assert.equal(
      (await server.app.inject(`/api/v1/slides/${id}`)).json<{ status: string }>().status,
      'cancelled',
    );
    await page.close();
  });

  it('met no Content-Security-Policy violation on any page', () => {
    assert.deepEqual(cspChecks.flat(), []);
  });
});
