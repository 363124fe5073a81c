import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { Catalog, type ImageRecord } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { workspaceInfo } from '../../src/prepare/info.js';
import { PatchStore } from '../../src/prepare/patch-store.js';
import type { PrepareRecipeInput } from '../../src/prepare/recipe.js';
import { prepare } from '../../src/prepare/prepare.js';
import { preprocessImage } from '../../src/image/preprocess.js';
import { INPUT_CHECKS } from '../../src/image/input-checks.js';
import { createSplit } from '../../src/acquire/split.js';
import { workspaceAt, type Workspace } from '../../src/workspace.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { tempDir, writeDataset, writeFile } from '../fixtures.js';

const needsShared = { skip: !hasShared(lymphomaDir) && 'needs ../shared' };

function storeDigest(dir: string): string {
  const hash = createHash('sha1');
  const store = PatchStore.open(dir);
  for (const shard of store.manifest.shards) hash.update(readFileSync(path.join(dir, shard.file)));
  hash.update(store.imageIds).update(store.classIndices).update(store.cols).update(store.rows);
  return hash.digest('hex');
}

async function developmentWorkspace(): Promise<{ catalog: Catalog; workspace: Workspace }> {
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, lymphomaDir, { groupBy: parseGroupRule('auto') });
  createSplit(catalog, 'default', { kind: 'holdout', testFraction: 0.4, validationFraction: 0.2, seed: 1 });
  return { catalog, workspace };
}

/**
 * Two classes of two 64x64 fields, imported; the left half of the first one whitened after import
 * (half of its patches glass, its tissue share halved).
 */
async function halfGlassWorkspace(): Promise<{ catalog: Catalog; workspace: Workspace; image: ImageRecord }> {
  const root = tempDir();
  await writeDataset(root, ['A', 'B'], 2, (_, i) => `${i}.png`, { width: 64, height: 64 });
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, root, { groupBy: parseGroupRule('none') });
  const sharp = (await import('sharp')).default;
  const image = catalog.images()[0];
  assert.ok(image);
  const pixels = await sharp(image.path).raw().toBuffer();
  for (let y = 0; y < 64; y++) pixels.fill(250, y * 64 * 3, (y * 64 + 32) * 3);
  await sharp(pixels, { raw: { width: 64, height: 64, channels: 3 } })
    .png()
    .toFile(image.path);
  return { catalog, workspace, image };
}

describe('prepare and the patch store', () => {
  it(
    'tiles the 295 development images into a reproducible store whose counts add up',
    needsShared,
    async () => {
      const first = await developmentWorkspace();
      const options = {
        name: 'native32',
        split: 'default',
        recipe: { normalisation: 'percentile' as const, targetScale: null, patchSize: 32 },
      };
      const report = await prepare(first.catalog, first.workspace, options);
      // 417x312 at its own scale: 13 x 9 patches of 32x32 per image.
      assert.equal(report.manifest.count, 295 * 117);
      assert.equal(report.manifest.images, 295);
      const store = PatchStore.open(report.dir);
      const perPartition = { train: 0, validation: 0, test: 0 };
      for (const image of store.images) {
        assert.equal(image.patches, 117);
        perPartition[image.partition ?? 'train'] += image.patches;
      }
      assert.equal(store.select({ partitions: ['test'] }).length, perPartition.test);
      assert.equal(
        store.select({ partitions: ['train'] }).length +
          store.select({ partitions: ['validation', 'test'] }).length,
        store.count,
      );
      const info = await workspaceInfo(first.catalog, first.workspace);
      assert.deepEqual(info.patchStores[0]?.perClass, { CLL: 89 * 117, FL: 109 * 117, MCL: 97 * 117 });

      // Reading back gives exactly what the shared preprocessing makes of that image.
      const image = first.catalog.images().find((i) => i.fileName === 'sj-05-1881-R1_003.png');
      assert.ok(image);
      const ids = store.select({ imageIds: [image.id] });
      const { patches, labels } = await store.read(ids);
      const direct = await preprocessImage(image.path, image, report.manifest.preprocess);
      assert.ok(Buffer.from(patches).equals(Buffer.from(direct.patches)));
      assert.ok(labels.every((l) => l === store.manifest.classes.indexOf('FL')));
      await store.close();

      // The same inputs give the same store, byte for byte; an unchanged store is reused.
      const again = await prepare(first.catalog, first.workspace, options);
      assert.equal(again.reused, true);
      const second = await developmentWorkspace();
      const rebuilt = await prepare(second.catalog, second.workspace, { ...options, threads: 1 });
      assert.equal(rebuilt.manifest.fingerprint, report.manifest.fingerprint);
      assert.equal(storeDigest(rebuilt.dir), storeDigest(report.dir));
      first.catalog.close();
      second.catalog.close();
    },
  );

  it(
    'cuts 336 patches of 64x64 per image at the original scale (the KNIME geometry)',
    needsShared,
    async () => {
      const root = tempDir();
      for (const [c, files] of Object.entries({
        CLL: ['sj-03-2810_001.png', 'sj-03-476_001.png'],
        FL: ['sj-05-1881-R1_001.png'],
        MCL: ['sj-04-4525-R4_001.png'],
      })) {
        mkdirSync(path.join(root, c), { recursive: true });
        for (const f of files) copyFileSync(path.join(lymphomaDir, c, f), path.join(root, c, f));
      }
      const workspace = workspaceAt(tempDir());
      const catalog = Catalog.open(workspace);
      await importImages(catalog, workspace, root, { groupBy: parseGroupRule('auto') });
      const report = await prepare(catalog, workspace, {
        name: 'knime',
        recipe: {
          normalisation: 'macenko',
          reference: 'FL/sj-05-1881-R1_001.png',
          targetScale: 1,
          patchSize: 64,
          // The original scale from the 0.3x copy: 3.33x, beyond the rule's 2x unless stated.
          maxUpsampling: 3.4,
        },
      });
      assert.equal(report.manifest.count, 4 * 336);
      const store = PatchStore.open(report.dir);
      assert.ok(store.images.every((i) => i.cols === 21 && i.rows === 16 && i.width === 1388));
      assert.equal(report.manifest.preprocess.normaliser.method, 'macenko');
      await store.close();
      catalog.close();
    },
  );

  it('drops background patches when asked, skips unusable images and reports them', async () => {
    const { catalog, workspace, image } = await halfGlassWorkspace();
    writeFile(catalog.images()[1]?.path ?? '', 'now corrupt');
    const report = await prepare(catalog, workspace, {
      name: 'filtered',
      recipe: { normalisation: 'none', targetScale: null, patchSize: 16, background: true },
    });
    assert.equal(report.skipped.length, 1);
    assert.match(report.skipped[0]?.reason ?? '', /could not be decoded|not a readable image/);
    const store = PatchStore.open(report.dir);
    const whitened = store.images.find((i) => i.imageId === image.id);
    assert.equal(whitened?.total, 16);
    assert.equal(whitened?.patches, 8);
    assert.equal(store.count, 8 + 16 + 16);
    await store.close();
    catalog.close();
  });

  it("keeps each image's input-check measures, and still opens a store of format 2 without them", async () => {
    const { catalog, workspace, image } = await halfGlassWorkspace();
    const options = {
      name: 'measured',
      recipe: { normalisation: 'none' as const, targetScale: null, patchSize: 16 },
    };
    const report = await prepare(catalog, workspace, options);
    const store = PatchStore.open(report.dir);
    assert.equal(store.manifest.format, 3);
    for (const stored of store.images) {
      const record = catalog.images().find((i) => i.id === stored.imageId);
      assert.ok(record && stored.measures);
      assert.deepEqual(
        Object.keys(stored.measures),
        INPUT_CHECKS.map((c) => c.name),
      );
      const direct = await preprocessImage(record.path, record, store.manifest.preprocess);
      assert.deepEqual(stored.measures, direct.assessment, 'the measures the predictor would judge');
    }
    const halved = store.images.find((i) => i.imageId === image.id)?.measures?.tissue ?? 0;
    assert.ok(halved > 0.4 && halved < 0.6, `tissue ${halved}`);
    await store.close();

    // A store of format 2: no measures column. It opens, its images unmeasured, and prepare
    // makes it again (with its measures) rather than reuse it.
    const manifestFile = path.join(report.dir, 'manifest.json');
    const manifest = JSON.parse(readFileSync(manifestFile, 'utf8')) as { format: number };
    writeFileSync(manifestFile, JSON.stringify({ ...manifest, format: 2 }));
    const db = new Database(path.join(report.dir, 'index.sqlite'));
    db.exec('ALTER TABLE images DROP COLUMN measures');
    db.close();
    const old = PatchStore.open(report.dir);
    assert.equal(old.count, store.count);
    assert.ok(old.images.every((i) => i.measures === null));
    await old.close();
    const again = await prepare(catalog, workspace, options);
    assert.equal(again.reused, false);
    const rebuilt = PatchStore.open(again.dir);
    assert.ok(rebuilt.images.every((i) => i.measures !== null));
    await rebuilt.close();
    catalog.close();
  });

  it('rejects bad settings with clear messages', async () => {
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    const options = {
      name: 'x',
      recipe: { normalisation: 'none' as const, targetScale: null, patchSize: 32 },
    };
    await assert.rejects(prepare(catalog, workspace, options), /no images: run pathotype data import first/);
    const root = tempDir();
    await writeDataset(root, ['A', 'B'], 1, (_, i) => `${i}.png`, { width: 40, height: 40 });
    await importImages(catalog, workspace, root, { groupBy: parseGroupRule('none') });
    await assert.rejects(prepare(catalog, workspace, { ...options, split: 'nope' }), /no split 'nope'/);
    await assert.rejects(
      prepare(catalog, workspace, { ...options, recipe: { ...options.recipe, patchSize: 2 } }),
      /patchSize must be >= 4/,
    );
    await assert.rejects(prepare(catalog, workspace, { ...options, name: '../escape' }), /store name/);
    await assert.rejects(
      prepare(catalog, workspace, { ...options, recipe: { ...options.recipe, targetScale: 1 } }),
      /no patches were produced/,
    );
    await assert.rejects(
      prepare(catalog, workspace, {
        ...options,
        recipe: { normalisation: 'reinhard', reference: 'missing.png' },
      }),
      /reference image/,
    );
    await assert.rejects(
      prepare(catalog, workspace, {
        ...options,
        recipe: { ...options.recipe, patchsize: 32 } as PrepareRecipeInput,
      }),
      /invalid preparation recipe: unknown key 'patchsize'/,
    );
    catalog.close();
  });
});
