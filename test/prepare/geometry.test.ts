/**
 * One unit for geometry: a recipe states its patches in microns per pixel, and the 0.3x set, the
 * half-resolution and the full-resolution samples, imported with their resolutions, give patches
 * of the same physical size from it; a model answers each sample as it answers its 0.3x twin.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Catalog } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { mppOf } from '../../src/image/preprocess.js';
import { PatchStore } from '../../src/prepare/patch-store.js';
import { prepare } from '../../src/prepare/prepare.js';
import { resolvePrepareRecipe } from '../../src/prepare/recipe.js';
import { workspaceAt } from '../../src/workspace.js';
import { Predictor } from '../../src/predict/predictor.js';
import { fieldCatalog, fieldsOf } from '../slide-fixtures.js';
import { tempDir } from '../fixtures.js';
import { modelAtScale } from '../model-at-scale.js';
import { fullresSampleDir, halfresSampleDir, hasShared, lymphomaDir } from '../helpers.js';

const RECIPE = { normalisation: 'none', mpp: 1.0667, patchSize: 32, stride: 32 } as const;
const needsShared = { skip: !hasShared(lymphomaDir) && 'needs ../shared' };

function names(dir: string): string[] {
  return ['CLL', 'FL', 'MCL'].flatMap((c) =>
    readdirSync(path.join(dir, c))
      .filter((f) => /\.(png|jpe?g|tiff?)$/i.test(f))
      .map((f) => `${c}/${f}`),
  );
}

/** Patches per image (by CLASS/name without extension) of a set imported at `mpp` and prepared with RECIPE. */
async function patchCounts(dir: string, mpp: number | undefined): Promise<Map<string, number>> {
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, dir, { groupBy: parseGroupRule('sj'), ...(mpp ? { mpp } : {}) });
  await prepare(catalog, workspace, { name: 'geometry', recipe: RECIPE, threads: 2 });
  const store = PatchStore.open(path.join(workspace.patchesDir, 'geometry'));
  try {
    assert.equal(mppOf(store.manifest.preprocess), 0.32 / 0.3, "patches at the recipe's um/px");
    assert.equal(store.patchSize, 32);
    const byId = new Map(catalog.images().map((i) => [i.id, i]));
    const counts = new Map<string, number>();
    for (const image of store.images) {
      const record = byId.get(image.imageId);
      if (record)
        counts.set(
          `${record.className}/${path.parse(record.path).name}`,
          store.patchesOf(image.imageId).length,
        );
    }
    return counts;
  } finally {
    await store.close();
    catalog.close();
  }
}

describe('geometry in microns per pixel', () => {
  it('takes mpp or targetScale (its alias), derives the other, and refuses the two when they disagree', () => {
    const fromMpp = resolvePrepareRecipe({ mpp: 1.0667 });
    assert.equal(fromMpp.targetScale, 0.3);
    assert.equal(fromMpp.mpp, 0.32 / 0.3);
    assert.equal(resolvePrepareRecipe({ targetScale: 0.5 }).mpp, 0.64);
    assert.equal(resolvePrepareRecipe({ mpp: null }).targetScale, null);
    assert.equal(resolvePrepareRecipe({ mpp: 0.64, targetScale: 0.5 }).targetScale, 0.5);
    assert.throws(() => resolvePrepareRecipe({ mpp: 0.5, targetScale: 1 }), /disagree/);
    assert.equal(mppOf({ targetScale: 0.3 }), 0.32 / 0.3, 'an old package without mpp');
  });

  it(
    'the 0.3x set, the half- and the full-resolution samples, imported with their resolutions, give the same patch grids from one recipe',
    needsShared,
    async () => {
      const low = await patchCounts(lymphomaDir, undefined);
      for (const [label, dir, mpp] of [
        ['half', halfresSampleDir, 0.64],
        ['full', fullresSampleDir, 0.32],
      ] as const) {
        const counts = await patchCounts(dir, mpp);
        assert.ok(counts.size > 0);
        for (const [name, count] of counts)
          assert.equal(count, low.get(name), `${label} ${name}: its twin's grid`);
      }
    },
  );

  it(
    'a model answers each half- and full-resolution sample as it answers its 0.3x twin',
    needsShared,
    async () => {
      // A small CNN at the recipe's resolution (mppOf derives its um/px from the scale).
      const predictor = await modelAtScale(resolvePrepareRecipe(RECIPE).targetScale ?? 0);
      const classes = predictor.classes;
      let most = 0;
      for (const [dir, scale] of [
        [halfresSampleDir, 0.5],
        [fullresSampleDir, 1],
      ] as const) {
        for (const name of names(dir)) {
          const [sample, twin] = await predictor.predictImages([
            { source: path.join(dir, name), scale },
            { source: path.join(lymphomaDir, name.replace(/\.[a-z]+$/i, '.png')) },
          ]);
          assert.ok(sample && twin);
          assert.deepEqual([sample.grid.cols, sample.grid.rows], [twin.grid.cols, twin.grid.rows], name);
          for (const c of classes)
            most = Math.max(most, Math.abs((sample.probabilities[c] ?? 0) - (twin.probabilities[c] ?? 0)));
        }
      }
      process.stdout.write(`# twins: mean probabilities differ by at most ${most.toFixed(4)}\n`);
      assert.ok(most < 0.02, `${most}`);
    },
  );

  it(
    'refuses enlargement beyond the limit before any work, and with the limit stated allows it in prepare and predict alike',
    needsShared,
    async () => {
      const { catalog, workspace } = await fieldCatalog(1);
      // The README's old encoder example: 0.5 um/px on the 0.3x images is 2.13x enlargement.
      const fine = { normalisation: 'none', mpp: 0.5, patchSize: 64, stride: 64 } as const;
      await assert.rejects(
        prepare(catalog, workspace, { name: 'fine', recipe: fine, threads: 1 }),
        (e: Error & { code?: string }) =>
          e.code === 'ERR_UPSAMPLING' &&
          /3 of 3 images would be enlarged up to 2\.13x/.test(e.message) &&
          /0\.5326 um\/px or coarser/.test(e.message) &&
          /--max-upsampling 2\.14/.test(e.message),
      );
      assert.ok(!existsSync(path.join(workspace.patchesDir, 'fine')), 'refused before any work');
      const report = await prepare(catalog, workspace, {
        name: 'fine',
        recipe: { ...fine, maxUpsampling: 2.2 },
        threads: 1,
      });
      assert.equal(report.manifest.preprocess.maxUpsampling, 2.2, 'stated in the store, so in its package');
      catalog.close();
      // A package at that scale refuses the same images unless it states the same limit.
      const plain = await modelAtScale(0.32 / 0.5);
      const stated = Predictor.fromNetwork(
        { ...plain.manifest, preprocess: { ...plain.manifest.preprocess, maxUpsampling: 2.2 } },
        plain.network,
      );
      const field = { source: fieldsOf('CLL', 1)[0] ?? '' };
      const [refused] = await plain.predictImagesSettled([field]);
      const [answered] = await stated.predictImagesSettled([field]);
      assert.equal(refused?.status === 'refused' && refused.code, 'ERR_UPSAMPLING');
      assert.notEqual(answered?.status, 'refused');
    },
  );
});
