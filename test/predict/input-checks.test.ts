import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { decodeRgb } from '../../src/image/image-io.js';
import { inputCheck, refusal, type CheckName } from '../../src/image/input-checks.js';
import { preprocessImage } from '../../src/image/preprocess.js';
import { tissueStats } from '../../src/image/tissue.js';
import { Network } from '../../src/engine/network.js';
import { buildSpec } from '../../src/engine/zoo.js';
import { PACKAGE_FORMAT, readManifest, writePackage, type ModelManifest } from '../../src/model/package.js';
import { fullresSampleDir, hasShared, lymphomaDir } from '../helpers.js';
import { heImage, tempDir, writeImage } from '../fixtures.js';
import { modelAtScale } from '../model-at-scale.js';

const chelsea = '/usr/lib/python3/dist-packages/skimage/data/chelsea.png';
const MIN_TISSUE_FRACTION = inputCheck('tissue').field;
const MIN_STAIN_FRACTION = inputCheck('stain').field;

describe('input checks: what the model was not made for is refused, not answered', () => {
  it(
    'tells H&E tissue from photographs and empty glass',
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const field = tissueStats(await decodeRgb(path.join(lymphomaDir, 'CLL/sj-03-2810_011.png')));
      assert.ok(
        field.tissueFraction > MIN_TISSUE_FRACTION && field.stainFraction > MIN_STAIN_FRACTION,
        JSON.stringify(field),
      );
      const synthetic = tissueStats(heImage(200, 150, 3));
      assert.ok(synthetic.stainFraction > MIN_STAIN_FRACTION, JSON.stringify(synthetic));
      assert.ok(
        existsSync(chelsea),
        "the test set-up installs Debian's python3-skimage for its sample photos",
      );
      const cat = tissueStats(await decodeRgb(chelsea));
      assert.ok(cat.stainFraction < MIN_STAIN_FRACTION, `the cat photo: ${JSON.stringify(cat)}`);
      const white = tissueStats({ data: new Uint8Array(100 * 100 * 3).fill(250), width: 100, height: 100 });
      assert.ok(white.tissueFraction < MIN_TISSUE_FRACTION);
    },
  );

  it('refuses a 20x15 image, a photograph and a white field with a reason each, and answers the rest', async () => {
    const predictor = await modelAtScale(0.3);
    const dir = tempDir();
    const tiny = path.join(dir, 'tiny.png');
    await writeImage(tiny, heImage(20, 15, 1));
    const white = await sharp({ create: { width: 417, height: 312, channels: 3, background: '#fafafa' } })
      .png()
      .toBuffer();
    const field = path.join(dir, 'field.png');
    await writeImage(field, heImage(417, 312, 2));
    const results = await predictor.predictImagesSettled([
      { source: tiny, name: 'tiny' },
      { source: chelsea, name: 'cat', scale: 0.3 },
      { source: white, name: 'white' },
      { source: field, name: 'field' },
      // The same field at twice the model's scale is fine: it is reduced, not enlarged.
      { source: field, name: 'field at 0.6', scale: 0.6 },
      // Enlarging 2x is the limit; beyond it the detail the model learned from is not there.
      { source: field, name: 'field at 0.14', scale: 0.14 },
    ]);
    assert.deepEqual(
      results.map((r) => [r.name, r.status === 'refused' ? r.code : 'answered']),
      [
        ['tiny', 'ERR_UPSAMPLING'],
        ['cat', 'ERR_NOT_HE'],
        ['white', 'ERR_BACKGROUND'],
        ['field', 'answered'],
        ['field at 0.6', 'answered'],
        ['field at 0.14', 'ERR_UPSAMPLING'],
      ],
    );
    const refusal = results[0];
    assert.ok(refusal?.status === 'refused');
    assert.match(refusal.message, /20\.8x enlargement.*at most 2x/);
    await assert.rejects(predictor.predictImages([{ source: white, name: 'white' }]), /mostly empty/);
  });

  it("refuses in the table's own words: each refusal is its check's one message", async () => {
    const predictor = await modelAtScale(0.3);
    const white = await sharp({ create: { width: 417, height: 312, channels: 3, background: '#fafafa' } })
      .png()
      .toBuffer();
    const small = path.join(tempDir(), 'small.png');
    await writeImage(small, heImage(24, 18, 4));
    const cases: [string, string | Buffer, number, CheckName][] = [
      ['white', white, 0.3, 'tissue'],
      ['cat', chelsea, 0.3, 'stain'],
      ['small', small, 0.3, 'patches'],
    ];
    for (const [name, source, scale, check] of cases) {
      const [result] = await predictor.predictImagesSettled([{ source, name, scale }]);
      assert.ok(result?.status === 'refused', name);
      const meta = await sharp(source).metadata();
      const { assessment } = await preprocessImage(
        source,
        { width: meta.width ?? 0, height: meta.height ?? 0, scale },
        predictor.manifest.preprocess,
      );
      const expected = refusal(inputCheck(check), name, assessment[check], 'field');
      assert.equal(result.code, expected.code, name);
      assert.equal(result.message, expected.message, name);
    }
  });

  it('says uncertain below the calibrated threshold, and answers above it', async () => {
    const dir = tempDir();
    const field = path.join(dir, 'field.png');
    await writeImage(field, heImage(417, 312, 2));
    const never = await modelAtScale(0.3, { temperature: 1, threshold: 1.01, target: 0.95 });
    const [unsure] = await never.predictImages([{ source: field }]);
    assert.equal(unsure?.status, 'uncertain');
    assert.equal(unsure.threshold, 1.01);
    const always = await modelAtScale(0.3, { temperature: 1, threshold: 0.2, target: 0.95 });
    const [sure] = await always.predictImages([{ source: field }]);
    assert.equal(sure?.status, 'answered');
    const total = Object.values(sure.probabilities).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(total - 1) < 1e-3);
    assert.equal(sure.confidence, Math.max(...Object.values(sure.probabilities)));
  });

  it(
    'gives a full-resolution image and its 0.3x twin the same answer',
    { skip: !hasShared(fullresSampleDir) && 'needs ../shared' },
    async () => {
      const predictor = await modelAtScale(0.3);
      const [full, twin] = await predictor.predictImages([
        { source: path.join(fullresSampleDir, 'CLL/sj-03-476_006.png') },
        { source: path.join(lymphomaDir, 'CLL/sj-03-476_006.png') },
      ]);
      assert.equal(full?.scale, 1);
      assert.ok(Math.abs((twin?.scale ?? 0) - 0.3004) < 1e-3);
      assert.equal(full.patches, twin?.patches);
      assert.equal(full.predicted, twin?.predicted);
    },
  );
});

describe('model package geometry', () => {
  it("reads a 1.1 package's tiles.size as the patch size, and refuses a package whose network disagrees with it", async () => {
    const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: 3 } });
    const network = await Network.create(spec);
    const base = {
      name: 'geometry',
      version: 1,
      spec,
      classes: ['CLL', 'FL', 'MCL'],
      vote: 'mean',
      preprocess: {
        normaliser: { method: 'none' },
        targetScale: 0.3,
        background: { enabled: false, brightness: 220, maxFraction: 0.5 },
      },
    };
    const old = path.join(tempDir(), 'old');
    await writePackage(
      old,
      {
        ...base,
        format: '1.1',
        preprocess: { ...base.preprocess, tiles: { size: 32, stride: 16 } },
      } as unknown as ModelManifest,
      await network.exportTensors(),
    );
    assert.deepEqual(readManifest(old).preprocess.tiles, { patchSize: 32, stride: 16 });
    const wrong = path.join(tempDir(), 'wrong');
    await writePackage(
      wrong,
      {
        ...base,
        format: PACKAGE_FORMAT,
        preprocess: { ...base.preprocess, tiles: { patchSize: 48, stride: 48 } },
      } as unknown as ModelManifest,
      await network.exportTensors(),
    );
    assert.throws(() => readManifest(wrong), /patches are 48x48 px but its network takes 32x32/);
  });
});
