/**
 * Quality control of focus: blurred copies of real fields are refused before any vote, while no
 * development image or full- or half-resolution sample is; the margins are printed.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { focusAtReference, MIN_FOCUS } from '../../src/image/focus.js';
import { decodeRgb } from '../../src/image/image-io.js';
import { MAX_INK_FRACTION, tissueStats } from '../../src/image/tissue.js';
import { fullresSampleDir, halfresSampleDir, hasShared, lymphomaDir } from '../helpers.js';
import { modelAtScale } from '../model-at-scale.js';

function images(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? images(path.join(dir, e.name))
      : /\.(png|tiff?|jpe?g|webp)$/i.test(e.name)
        ? [path.join(dir, e.name)]
        : [],
  );
}

const needsShared = { skip: !hasShared(lymphomaDir) && 'needs ../shared' };

describe('focus', () => {
  it(
    'refuses blurred copies of real full-resolution fields, several strengths, before any vote',
    needsShared,
    async () => {
      const predictor = await modelAtScale(0.3005, { temperature: 1, threshold: 0, target: 0.9 });
      const fields = images(fullresSampleDir).slice(0, 6);
      const sharpFields = await predictor.predictImagesSettled(
        fields.map((file) => ({ source: file, name: file, scale: 1 })),
      );
      assert.ok(
        sharpFields.every((p) => p.status === 'answered'),
        'the sharp fields are answered by this package',
      );
      for (const sigma of [8, 12, 20]) {
        const blurred = await Promise.all(fields.map((file) => sharp(file).blur(sigma).png().toBuffer()));
        const results = await predictor.predictImagesSettled(blurred.map((source) => ({ source, scale: 1 })));
        for (const r of results) {
          assert.equal(r.status, 'refused', `sigma ${sigma}`);
          assert.equal(r.status === 'refused' ? r.code : '', 'ERR_BLURRED');
        }
      }
    },
  );

  it(
    'refuses none of the 295 development images and the 37 full- and half-resolution samples',
    needsShared,
    async () => {
      const sets: [string, string[], number][] = [
        ['0.3x', images(lymphomaDir), 0.3],
        ['full resolution', images(fullresSampleDir), 1],
        ['half resolution', images(halfresSampleDir), 0.5],
      ];
      for (const [name, files, scale] of sets) {
        let least = Infinity;
        for (const file of files) {
          const meta = await sharp(file).metadata();
          const factor = 0.3 / scale;
          const image = await decodeRgb(file, {
            width: Math.round((meta.width ?? 0) * factor),
            height: Math.round((meta.height ?? 0) * factor),
          });
          least = Math.min(least, await focusAtReference(image, 0.3));
        }
        process.stdout.write(
          `# focus, ${name}: ${files.length} images, least ${least.toFixed(4)}, ${(least / MIN_FOCUS).toFixed(1)}x the threshold ${MIN_FOCUS}\n`,
        );
        assert.ok(files.length > 0);
        assert.ok(least >= MIN_FOCUS, `${name}: ${least}`);
      }
    },
  );

  it(
    'refuses a field with a blue or green pen stroke over a fifth of it, and no development image for ink',
    needsShared,
    async () => {
      const predictor = await modelAtScale(0.3005);
      const field = images(lymphomaDir).find((f) => f.includes('/FL/')) ?? '';
      const meta = await sharp(field).metadata();
      const width = meta.width ?? 0;
      const height = meta.height ?? 0;
      for (const colour of ['#1f3fbf', '#1f9f3f']) {
        const stroke = await sharp({
          create: { width, height: Math.round(height * 0.22), channels: 3, background: colour },
        })
          .png()
          .toBuffer();
        const marked = await sharp(field)
          .composite([{ input: stroke, top: Math.round(height * 0.4), left: 0 }])
          .png()
          .toBuffer();
        const [result] = await predictor.predictImagesSettled([{ source: marked, scale: 0.3 }]);
        assert.equal(result?.status, 'refused', colour);
        assert.equal(result.status === 'refused' ? result.code : '', 'ERR_PEN_MARK');
      }
      let most = 0;
      for (const dir of [lymphomaDir, fullresSampleDir, halfresSampleDir])
        for (const file of images(dir)) most = Math.max(most, tissueStats(await decodeRgb(file)).inkFraction);
      process.stdout.write(
        `# ink: the most any development image or sample carries is ${(most * 100).toFixed(1)}%\n`,
      );
      assert.ok(most < MAX_INK_FRACTION);
    },
  );
});
