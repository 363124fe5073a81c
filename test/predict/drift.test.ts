/**
 * Drift on real fields: a probe (percentile normalisation, as `prepare` defaults to) trained on
 * 15 patients of the development images keeps a reference of its training images; held-out
 * fields of the 9 other patients are rarely "unlike the training data", and copies of the same
 * fields re-stained as another laboratory would stain them are so far more often. A package without a reference answers with the atypicality unknown.
 * The figures are printed for the README ("Drift").
 */
import assert from 'node:assert/strict';
import { cpSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Catalog, type ImageRecord } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { createSplit } from '../../src/acquire/split.js';
import { readManifest } from '../../src/model/package.js';
import { Predictor, type ImagePrediction, type RefusedImage } from '../../src/predict/predictor.js';
import { prepare } from '../../src/prepare/prepare.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { workspaceAt } from '../../src/workspace.js';
import { hasShared, lymphomaDir, weightsDir } from '../helpers.js';
import { tempDir } from '../fixtures.js';
import { restained } from '../restain.js';

const MOBILENET = path.join(weightsDir, 'mobilenet_v2_0.35_224_imagenet_backbone_tfjs');

interface Share {
  unlike: number;
  answered: number;
  refused: number;
}

function shareOf(results: readonly (ImagePrediction | RefusedImage)[]): Share {
  const answered = results.filter((r): r is ImagePrediction => r.status !== 'refused');
  return {
    unlike: answered.filter((r) => r.atypicality?.unlike).length,
    answered: answered.length,
    refused: results.length - answered.length,
  };
}

const fraction = (s: Share): number => s.unlike / Math.max(1, s.answered);

describe(
  'drift: the atypicality of real fields',
  { skip: !hasShared(lymphomaDir) || !hasShared(MOBILENET) },
  () => {
    let predictor: Predictor;
    let heldOut: ImageRecord[];
    let modelDir: string;

    before(async () => {
      const workspace = workspaceAt(tempDir());
      const catalog = Catalog.open(workspace);
      await importImages(catalog, workspace, lymphomaDir, { groupBy: parseGroupRule('patient') });
      createSplit(catalog, 'default', {
        kind: 'holdout',
        testFraction: 0.34,
        validationFraction: 0,
        seed: 1,
      });
      heldOut = catalog
        .splitMembers('default')
        .filter((m) => m.partition === 'test')
        .map((m) => catalog.image(m.imageId))
        .filter((r): r is ImageRecord => r !== undefined);
      await prepare(catalog, workspace, {
        name: 'fields',
        split: 'default',
        recipe: { normalisation: 'percentile', mpp: 1.0667, patchSize: 96 },
      });
      catalog.close();
      const result = await train(
        workspace,
        resolveTrainConfig({
          name: 'drift',
          store: 'fields',
          architecture: 'mobilenet_v2',
          alpha: 0.35,
          method: 'probe',
          pretrained: MOBILENET,
          vote: 'logit',
          threads: 2,
        }),
      );
      modelDir = result.packageDir;
      predictor = await Predictor.load(modelDir);
    });
    after(() => predictor?.close());

    it('keeps the reference of the 15 training patients in the package', () => {
      const reference = readManifest(modelDir).reference;
      assert.ok(reference, 'the package has a reference');
      assert.equal(reference.atypicality.patients, 15);
      assert.equal(reference.atypicality.images, 181);
      assert.equal(reference.atypicality.dims, 1280, "MobileNetV2's pooled features");
      assert.equal(new Set(heldOut.map((r) => r.caseId)).size, 9, 'nine held-out patients');
    });

    it('flags few held-out real fields and many more re-stained copies of them', async () => {
      const real = shareOf(
        await predictor.predictImagesSettled(
          heldOut.map((r) => ({ source: r.path, name: r.fileName, ...(r.scale ? { scale: r.scale } : {}) })),
        ),
      );
      const copies = async (h: number, e: number): Promise<Share> => {
        const inputs = [];
        for (const r of heldOut)
          inputs.push({
            source: await restained(r.path, h, e),
            name: r.fileName,
            ...(r.scale ? { scale: r.scale } : {}),
          });
        return shareOf(await predictor.predictImagesSettled(inputs));
      };
      const strongHaematoxylin = await copies(1.6, 0.5);
      const overstained = await copies(1.8, 1.8);
      const figures = { heldOut: real, strongHaematoxylin, overstained };
      process.stdout.write(`# drift figures: ${JSON.stringify(figures)}\n`);
      assert.equal(real.refused, 0, 'every held-out field is answered');
      assert.ok(
        fraction(real) <= 0.05,
        `held-out fields unlike the training data: ${real.unlike} of ${real.answered}`,
      );
      for (const [name, share] of Object.entries({ strongHaematoxylin, overstained })) {
        assert.ok(share.answered >= 50, `${name}: ${share.answered} answered`);
        assert.ok(
          fraction(share) >= Math.max(0.1, 3 * fraction(real)),
          `${name}: ${share.unlike} of ${share.answered} unlike, against ${real.unlike} of ${real.answered} held-out fields`,
        );
      }
    });

    it('answers with the atypicality unknown for a package made without a reference', async () => {
      const older = path.join(tempDir(), 'older');
      cpSync(modelDir, older, { recursive: true });
      const manifest = readManifest(older);
      delete manifest.reference;
      writeFileSync(path.join(older, 'model.json'), JSON.stringify(manifest));
      const old = await Predictor.load(older);
      try {
        const [result] = await old.predictImagesSettled([
          { source: heldOut[0]?.path ?? '', scale: heldOut[0]?.scale ?? null },
        ]);
        assert.ok(result && result.status !== 'refused');
        assert.equal(result.atypicality, null);
        assert.ok(result.inputs && result.inputs.focus > 0, 'the input measures are still taken');
      } finally {
        await old.close();
      }
    });
  },
);
