/**
 * Quality control: blurred, folded, bubbled and ink-marked copies of real fields are refused
 * before any vote, each with its own code, while no development image or full- or half-resolution
 * sample is; the margins are printed.
 */
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { artefactStats } from '../../src/image/artefacts.js';
import { focusMeasure } from '../../src/image/focus.js';
import { decodeRgb } from '../../src/image/image-io.js';
import { inputCheck } from '../../src/image/input-checks.js';
import { atJudgingScale } from '../../src/image/judged-pixels.js';
import { tissueStats } from '../../src/image/tissue.js';
import { fullresSampleDir, halfresSampleDir, hasShared, lymphomaDir } from '../helpers.js';
import { modelAtScale } from '../model-at-scale.js';

const MIN_FOCUS = inputCheck('focus').field;
const MAX_INK_FRACTION = inputCheck('ink').field;
const MAX_FOLD_FRACTION = inputCheck('fold').field;
const MAX_BUBBLE_FRACTION = inputCheck('bubble').field;
const MAX_BLACK_INK_FRACTION = inputCheck('blackInk').field;

function images(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory()
      ? images(path.join(dir, e.name))
      : /\.(png|tiff?|jpe?g|webp)$/i.test(e.name)
        ? [path.join(dir, e.name)]
        : [],
  );
}

/** The 0.3x development images and the full- and half-resolution samples, each with its scale. */
function developmentSets(): [string, string[], number][] {
  return [
    ['0.3x', images(lymphomaDir), 0.3],
    ['full resolution', images(fullresSampleDir), 1],
    ['half resolution', images(halfresSampleDir), 0.5],
  ];
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
      for (const [name, files, scale] of developmentSets()) {
        let least = Infinity;
        for (const file of files) {
          const meta = await sharp(file).metadata();
          const factor = 0.3 / scale;
          const image = await decodeRgb(file, {
            width: Math.round((meta.width ?? 0) * factor),
            height: Math.round((meta.height ?? 0) * factor),
          });
          least = Math.min(least, focusMeasure(image));
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

  it(
    'refuses a folded field, one with an air bubble (at 0.3x and full resolution) and one marked in black ink',
    needsShared,
    async () => {
      const predictor = await modelAtScale(0.3005);
      const field = images(lymphomaDir).find((f) => f.includes('/FL/')) ?? '';
      const full = images(fullresSampleDir)[0] ?? '';
      const refusal = async (source: Buffer, scale: number): Promise<string> => {
        const [result] = await predictor.predictImagesSettled([{ source, scale }]);
        return result?.status === 'refused' ? result.code : (result?.status ?? '');
      };
      assert.equal(await refusal(await readFile(field), 0.3), 'answered', 'the field itself is answered');
      // A fold: a band of the section lying on itself, twice as thick, so its transmittance squared.
      const { data, info } = await sharp(field).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const folded = Buffer.from(data);
      const [top, bottom] = [Math.round(info.height * 0.4), Math.round(info.height * 0.52)];
      for (let i = top * info.width * 3; i < bottom * info.width * 3; i++)
        folded[i] = Math.round(((data[i] ?? 0) * (data[i] ?? 0)) / 255);
      const foldedPng = await sharp(folded, { raw: { width: info.width, height: info.height, channels: 3 } })
        .png()
        .toBuffer();
      assert.equal(await refusal(foldedPng, 0.3), 'ERR_TISSUE_FOLD');
      // A bubble: a thin dark colourless rim around a hazy interior.
      const bubble = async (file: string, radius: number, rim: number): Promise<Buffer> => {
        const meta = await sharp(file).metadata();
        const [w, h] = [meta.width ?? 0, meta.height ?? 0];
        const svg = `<svg width="${w}" height="${h}"><circle cx="${w / 2}" cy="${h / 2}" r="${radius}" fill="#e8e8ec" fill-opacity="0.5" stroke="#2b2b2e" stroke-width="${rim}"/></svg>`;
        const drawn = await sharp(file)
          .composite([{ input: Buffer.from(svg) }])
          .png()
          .toBuffer();
        return sharp(drawn).blur(0.6).png().toBuffer();
      };
      assert.equal(await refusal(await bubble(field, 30, 3), 0.3), 'ERR_BUBBLE');
      assert.equal(await refusal(await bubble(full, 100, 10), 1), 'ERR_BUBBLE');
      // Black ink: a stroke over a fifth of the field.
      const meta = await sharp(field).metadata();
      const stroke = await sharp({
        create: {
          width: meta.width ?? 0,
          height: Math.round((meta.height ?? 0) * 0.22),
          channels: 3,
          background: '#151515',
        },
      })
        .png()
        .toBuffer();
      const inked = await sharp(field)
        .composite([{ input: stroke, top: Math.round((meta.height ?? 0) * 0.4), left: 0 }])
        .png()
        .toBuffer();
      assert.equal(await refusal(inked, 0.3), 'ERR_PEN_MARK');
    },
  );

  it(
    'finds no fold, bubble or black ink on the 295 development images and the 37 samples',
    needsShared,
    async () => {
      for (const [name, files, scale] of developmentSets()) {
        const most = { foldFraction: 0, bubbleFraction: 0, blackInkFraction: 0 };
        for (const file of files) {
          const stats = artefactStats(await atJudgingScale(await decodeRgb(file), scale));
          most.foldFraction = Math.max(most.foldFraction, stats.foldFraction);
          most.bubbleFraction = Math.max(most.bubbleFraction, stats.bubbleFraction);
          most.blackInkFraction = Math.max(most.blackInkFraction, stats.blackInkFraction);
        }
        process.stdout.write(
          `# artefacts, ${name}: ${files.length} images, most fold ${most.foldFraction.toFixed(4)} (limit ${MAX_FOLD_FRACTION}), ` +
            `bubble ${most.bubbleFraction.toFixed(4)} (limit ${MAX_BUBBLE_FRACTION}), black ink ${most.blackInkFraction.toFixed(4)} (limit ${MAX_BLACK_INK_FRACTION})\n`,
        );
        assert.ok(most.foldFraction <= MAX_FOLD_FRACTION, name);
        assert.ok(most.bubbleFraction <= MAX_BUBBLE_FRACTION, name);
        assert.ok(most.blackInkFraction <= MAX_BLACK_INK_FRACTION, name);
      }
    },
  );
});
