import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { check } from '@placemarkio/check-geojson';
import sharp from 'sharp';

import { isWholeSlide, micronsPerPixel, Slide } from '../../src/slide/slide.js';
import { tissueMask } from '../../src/image/tissue.js';
import { slideGeoJson } from '../../src/predict/slide-geojson.js';
import { predictSlide } from '../../src/predict/slide-predictor.js';
import { modelMppOf } from '../../src/predict/slide-plan.js';
import { heImage, tempDir } from '../fixtures.js';
import { milPackageFrom, modelAtScale } from '../model-at-scale.js';
import { writePackage } from '../../src/model/package.js';
import { Predictor } from '../../src/predict/predictor.js';
import { executeSlideJob } from '../../src/predict/slide-job.js';
import { softmax } from '../../src/predict/vote.js';
import { hasShared, lymphomaDir, runCli } from '../helpers.js';
import { fieldsOf, MPP_03X, writeTestSlide, type TestSlide } from '../slide-fixtures.js';

const needsShared = { skip: !hasShared(lymphomaDir) && 'needs ../shared' };

let slide: TestSlide | undefined;
/** 4 x 2 cells: six fields and two of blank glass, 1668 x 624 px at the 0.3x copy's scale. */
async function testSlide(): Promise<TestSlide> {
  slide ??= await writeTestSlide(
    path.join(tempDir(), 'mosaic.tif'),
    [...fieldsOf('CLL', 3), null, ...fieldsOf('MCL', 3), null],
    { across: 4 },
  );
  return slide;
}

describe('whole-slide images', () => {
  it('masks tissue, not glass or pen ink', () => {
    const field = heImage(60, 40, 3);
    const data = new Uint8Array(field.data);
    for (let y = 0; y < 40; y++)
      for (let x = 0; x < 60; x++) {
        const o = (y * 60 + x) * 3;
        if (x >= 40)
          data.set([245, 245, 243], o); // glass
        else if (x >= 30) data.set([40, 60, 160], o); // blue ink
      }
    const mask = tissueMask({ data, width: 60, height: 40 });
    const share = (x0: number, x1: number): number => {
      let on = 0;
      for (let y = 0; y < 40; y++) for (let x = x0; x < x1; x++) on += mask[y * 60 + x] ?? 0;
      return on / ((x1 - x0) * 40);
    };
    assert.ok(share(0, 30) > 0.9, String(share(0, 30)));
    assert.equal(share(30, 40), 0);
    assert.equal(share(40, 60), 0);
  });

  it(
    'opens a pyramidal TIFF: levels, microns per pixel, exact regions at every level',
    needsShared,
    async () => {
      const t = await testSlide();
      const s = await Slide.open(t.file);
      try {
        assert.equal(s.info.vendor, 'generic-tiff');
        assert.deepEqual([s.info.width, s.info.height], [1668, 624]);
        assert.ok(s.info.levels.length >= 3, JSON.stringify(s.info.levels));
        assert.ok(Math.abs((s.info.mpp ?? 0) - MPP_03X) < 1e-3, String(s.info.mpp));
        assert.ok(await isWholeSlide(t.file));
        // A region of level 0 is exactly the mosaic's pixels there.
        const region = await s.readRegion({ x: 400, y: 300, level: 0, width: 64, height: 48 });
        const expected = await sharp(t.file)
          .extract({ left: 400, top: 300, width: 64, height: 48 })
          .raw()
          .toBuffer();
        assert.deepEqual(Buffer.from(region.data), expected);
        // Level 1 halves the slide; its region at level-0 (800, 300) starts at level-1 (400, 150).
        const level1 = s.info.levels[1];
        assert.equal(level1?.downsample, 2);
        const half = await s.readRegion({ x: 800, y: 300, level: 1, width: 10, height: 10 });
        assert.equal(half.data.length, 300);
        assert.equal(s.levelFor(3), 1);
        assert.equal(s.levelFor(0.5), 0);
      } finally {
        await s.close();
      }
    },
  );

  it(
    'refuses what is not a slide, damaged files and impossible reads with a code each',
    needsShared,
    async () => {
      const dir = tempDir();
      const text = path.join(dir, 'notes.svs');
      writeFileSync(text, 'not a slide');
      await assert.rejects(Slide.open(text), { code: 'ERR_SLIDE_UNSUPPORTED' });
      await assert.rejects(Slide.open(path.join(dir, 'missing.svs')), { code: 'ERR_NOT_FOUND' });
      const t = await testSlide();
      const truncated = path.join(dir, 'truncated.tif');
      const bytes = await readFile(t.file);
      writeFileSync(truncated, bytes.subarray(0, Math.floor(bytes.length / 3)));
      await assert.rejects(
        (async () => {
          const s = await Slide.open(truncated);
          try {
            for (let y = 0; y < s.info.height; y += 256)
              await s.readRegion({ x: 0, y, level: 0, width: s.info.width, height: 256 });
          } finally {
            await s.close();
          }
        })(),
        (error: { code?: string }) => error.code === 'ERR_SLIDE' || error.code === 'ERR_SLIDE_UNSUPPORTED',
      );
      const s = await Slide.open(t.file);
      await assert.rejects(s.readRegion({ x: 0, y: 0, level: 9, width: 4, height: 4 }), {
        code: 'ERR_SLIDE',
      });
      await assert.rejects(
        s.readRegion({ x: 0, y: 0, level: 0, width: 10_000, height: 10_000 }),
        /more than one read/,
      );
      await s.close();
      await assert.rejects(s.readRegion({ x: 0, y: 0, level: 0, width: 4, height: 4 }), /closed/);
      // A plain (strip) TIFF field is an image, not a slide.
      const field = path.join(dir, 'field.tif');
      await sharp(fieldsOf('FL', 1)[0]).tiff().toFile(field);
      assert.equal(await isWholeSlide(field), false);
      assert.equal(micronsPerPixel({ 'openslide.mpp-x': '0.25' }), 0.25);
      assert.equal(micronsPerPixel({ 'tiff.XResolution': '25400', 'tiff.ResolutionUnit': 'inch' }), 1);
      assert.equal(micronsPerPixel({}), null);
    },
  );

  it(
    'tiles the tissue at the model scale; each tile is the patch read where it says, voted into a slide answer',
    needsShared,
    async () => {
      const t = await testSlide();
      const predictor = await modelAtScale(0.3005);
      assert.ok(Math.abs(modelMppOf(predictor.manifest.preprocess) - MPP_03X) < 1e-9);
      const progress: number[] = [];
      const result = await predictSlide(predictor, t.file, { onProgress: (done) => progress.push(done) });
      // The model's scale is the slide's: 32 px tiles on a 52 x 19 grid.
      assert.ok(Math.abs(result.tiling.size - 32) < 0.01, String(result.tiling.size));
      assert.deepEqual([result.tiling.cols, result.tiling.rows], [52, 19]);
      // The glass cells (x >= 1251 in row 0, x >= 1251 in row 1) hold no tile.
      assert.ok(
        result.tiles.every((tile) => tile.x + tile.size <= 1251 + 32),
        'no tiles on glass',
      );
      assert.ok(result.tissue.tiles > 300 && result.tissue.tiles <= 52 * 19, String(result.tissue.tiles));
      assert.equal(progress.at(-1), result.tissue.tiles);
      // Re-read three tiles by hand at their coordinates: the same probabilities.
      const s = await Slide.open(t.file);
      for (const tile of [
        result.tiles[0],
        result.tiles[Math.floor(result.tiles.length / 2)],
        result.tiles.at(-1),
      ]) {
        assert.ok(tile);
        const patch = await s.readRegion({ x: tile.x, y: tile.y, level: 0, width: 32, height: 32 });
        const outputs = await predictor.predictPatches(patch.data);
        for (const [k, p] of tile.probabilities.entries())
          assert.ok(Math.abs(p - (outputs.probabilities[k] ?? 0)) < 2e-3);
      }
      await s.close();
      assert.ok(['CLL', 'FL', 'MCL'].includes(result.result.predicted));
      const shares = Object.values(result.result.voteShares).reduce((a, b) => a + b, 0);
      assert.ok(Math.abs(shares - 1) < 1e-3);

      // GeoJSON that QuPath reads: valid RFC 7946, one detection per tile at its coordinates.
      const geojson = slideGeoJson(result);
      check(JSON.stringify(geojson));
      assert.equal(geojson.features.length, result.tiles.length);
      const first = geojson.features[0];
      const tile = result.tiles[0];
      assert.ok(first && tile);
      assert.deepEqual(first.geometry.coordinates[0]?.[0], [tile.x, tile.y]);
      assert.deepEqual(first.geometry.coordinates[0]?.[2], [tile.x + tile.size, tile.y + tile.size]);
      assert.equal(first.properties.objectType, 'detection');
      assert.equal(first.properties.classification.name, ['CLL', 'FL', 'MCL'][tile.predicted]);
      assert.equal(
        Object.keys(first.properties.measurements).length,
        5,
        'three probabilities, the focus and the density ratio',
      );
    },
  );

  it(
    'leaves blurred tiles out of the slide answer, and marks them Ignore* in the GeoJSON',
    needsShared,
    async () => {
      const dir = tempDir();
      const sharpFields = fieldsOf('CLL', 2);
      const blurred = await Promise.all(
        fieldsOf('MCL', 2).map(async (file, i) => {
          const out = path.join(dir, `blurred-${i}.png`);
          await sharp(file).blur(4).toFile(out);
          return out;
        }),
      );
      const mixed = await writeTestSlide(path.join(dir, 'mixed.tif'), [...sharpFields, ...blurred], {
        across: 2,
      });
      const predictor = await modelAtScale(0.3005);
      const result = await predictSlide(predictor, mixed.file);
      const half = mixed.height / 2;
      const top = result.tiles.filter((t) => t.y + t.size <= half);
      const bottom = result.tiles.filter((t) => t.y >= half);
      assert.ok(top.length > 0 && top.every((t) => !t.blurred), 'the sharp fields are in focus');
      assert.ok(bottom.length > 0 && bottom.every((t) => t.blurred), 'the blurred fields are not');
      assert.equal(result.tissue.blurred, result.tiles.filter((t) => t.blurred).length);
      assert.equal(
        result.result.patches,
        result.tiles.filter((t) => !t.blurred && !t.folded).length,
        'only tiles in focus vote',
      );
      const geojson = slideGeoJson(result);
      const names = new Set(
        geojson.features
          .filter((_, k) => result.tiles[k]?.blurred)
          .map((f) => f.properties.classification.name),
      );
      assert.deepEqual([...names], ['Ignore*']);
    },
  );

  it(
    'leaves folded tiles (a field lying on itself: its transmittance squared) out of the slide answer',
    needsShared,
    async () => {
      const dir = tempDir();
      const folded = await Promise.all(
        fieldsOf('CLL', 1).map(async (file, i) => {
          const { data, info } = await sharp(file).removeAlpha().raw().toBuffer({ resolveWithObject: true });
          const out = path.join(dir, `folded-${i}.png`);
          const squared = Buffer.from(data.map((v) => Math.round((v * v) / 255)));
          await sharp(squared, { raw: { width: info.width, height: info.height, channels: 3 } }).toFile(out);
          return out;
        }),
      );
      const mixed = await writeTestSlide(path.join(dir, 'folded.tif'), [...fieldsOf('CLL', 3), ...folded], {
        across: 2,
      });
      const result = await predictSlide(await modelAtScale(0.3005), mixed.file);
      const half = mixed.height / 2;
      const top = result.tiles.filter((t) => t.y + t.size <= half);
      const lowerRight = result.tiles.filter((t) => t.y >= half && t.x >= mixed.width / 2);
      assert.ok(
        top.every((t) => !t.folded),
        'the fields lying flat are not folded',
      );
      assert.ok(lowerRight.length > 0, 'the folded field has tissue tiles');
      const share = lowerRight.filter((t) => t.folded).length / lowerRight.length;
      assert.ok(share > 0.9, `the folded field's tiles are folds (${share})`);
      assert.equal(result.tissue.folded, result.tiles.filter((t) => t.folded).length);
      assert.equal(result.result.patches, result.tiles.filter((t) => !t.blurred && !t.folded).length);
      const geojson = slideGeoJson(result);
      assert.ok(
        geojson.features.every(
          (f, k) => !result.tiles[k]?.folded || f.properties.classification.name === 'Ignore*',
        ),
      );
    },
  );

  it(
    "judges the tiles of a model 4x coarser than the slide at the model's pixels: sharp fields answered, fields blurred by one model pixel refused",
    needsShared,
    async () => {
      const dir = tempDir();
      const coarse = await modelAtScale(0.3005 / 4);
      const sharpSlide = await writeTestSlide(path.join(dir, 'sharp.tif'), fieldsOf('CLL', 4), { across: 2 });
      const answered = await predictSlide(coarse, sharpSlide.file);
      assert.ok(answered.tissue.tiles > 0);
      assert.equal(answered.tissue.blurred, 0, 'no tile of sharp fields is out of focus');
      assert.equal(answered.result.patches, answered.tissue.tiles - answered.tissue.folded);
      const blurred = await Promise.all(
        fieldsOf('CLL', 4).map(async (file, i) => {
          const out = path.join(dir, `blurred-${i}.png`);
          await sharp(file).blur(4).toFile(out);
          return out;
        }),
      );
      const blurredSlide = await writeTestSlide(path.join(dir, 'blurred.tif'), blurred, { across: 2 });
      await assert.rejects(predictSlide(coarse, blurredSlide.file), {
        code: 'ERR_BLURRED',
        message:
          /^every tissue tile of blurred\.tif is out of focus \(focus 0\.00\d\d; at least 0\.0050 is needed\)/,
      });
    },
  );

  it(
    'a run stopped midway continues from its last finished region, with the same answer',
    needsShared,
    async () => {
      const t = await testSlide();
      const predictor = await modelAtScale(0.3005);
      const whole = await predictSlide(predictor, t.file);
      const checkpointDir = path.join(tempDir(), 'regions');
      const stop = new AbortController();
      await assert.rejects(
        predictSlide(predictor, t.file, {
          checkpointDir,
          signal: stop.signal,
          onProgress: () => stop.abort(),
        }),
        { code: 'ERR_ABORTED' },
      );
      const saved = readdirSync(checkpointDir).filter((f) => f.endsWith('.f32')).length;
      assert.ok(saved >= 1, `${saved} regions kept`);
      const progress: number[] = [];
      const resumed = await predictSlide(predictor, t.file, {
        checkpointDir,
        onProgress: (done) => progress.push(done),
      });
      assert.ok((progress[0] ?? 0) > 0, 'the first report counts the regions done before');
      assert.deepEqual(resumed.result, whole.result);
      assert.deepEqual(resumed.tiles, whole.tiles);
    },
  );

  it(
    'refuses a slide without microns per pixel unless told, and one far coarser than the model',
    needsShared,
    async () => {
      const predictor = await modelAtScale(0.3005);
      const dir = tempDir();
      const coarse = await writeTestSlide(path.join(dir, 'coarse.tif'), fieldsOf('FL', 2), {
        across: 2,
        mpp: MPP_03X * 3,
      });
      await assert.rejects(predictSlide(predictor, coarse.file), { code: 'ERR_UPSAMPLING' });
      const told = await predictSlide(predictor, coarse.file, { slideMpp: MPP_03X });
      assert.ok(told.tissue.tiles > 0);
    },
  );

  it(
    'answers a slide by attention over its clear tiles: each tile its weight, in the GeoJSON and an attention map',
    needsShared,
    async () => {
      const t = await testSlide();
      const plain = await modelAtScale(0.3005);
      const plainDir = path.join(tempDir(), 'plain-model');
      await writePackage(plainDir, plain.manifest, await plain.network.exportTensors());
      const predictor = await Predictor.load(
        await milPackageFrom(plainDir, path.join(tempDir(), 'mil-model')),
        {
          bf16: false,
        },
      );
      const checkpointDir = path.join(tempDir(), 'mil-regions');
      const result = await predictSlide(predictor, t.file, { checkpointDir });
      assert.equal(result.model.rule, 'attention');
      const weights = result.tiles.map((tile) => tile.attention ?? NaN);
      assert.ok(weights.every((w) => w >= 0));
      const clear = result.tiles.filter((tile) => !tile.blurred && !tile.folded);
      const total = clear.reduce((sum, tile) => sum + (tile.attention ?? 0), 0);
      assert.ok(Math.abs(total - 1) < 2e-3, `the clear tiles' weights sum to ${total}`);
      assert.ok(
        Math.max(...weights) > 1.5 * Math.min(...clear.map((tile) => tile.attention ?? 0)),
        'weights differ',
      );
      // The slide's answer is the attention-weighted mean of its clear tiles' log-probabilities.
      const scores = result.model.classes.map((_, c) =>
        clear.reduce((sum, tile) => sum + (tile.attention ?? 0) * Math.log(tile.probabilities[c] ?? 1e-9), 0),
      );
      const expected = softmax(scores);
      result.model.classes.forEach((c, k) =>
        assert.ok(Math.abs((result.result.probabilities[c] ?? 0) - (expected[k] ?? 0)) < 5e-3, c),
      );
      // A run stopped midway continues from its regions: the same weights.
      const again = await predictSlide(predictor, t.file, { checkpointDir });
      assert.deepEqual(again.tiles, result.tiles);
      const first = slideGeoJson(result).features[0];
      assert.equal(first?.properties.measurements.Attention, result.tiles[0]?.attention);
      const jobDir = path.join(tempDir(), 'mil-job');
      await executeSlideJob(
        predictor,
        { slidePath: t.file, slideMpp: null },
        jobDir,
        new AbortController().signal,
        () => undefined,
      );
      for (const file of ['heatmap.png', 'attention.png', 'attention.dzi'])
        assert.ok(existsSync(path.join(jobDir, file)), file);
      const attentionMap = await sharp(path.join(jobDir, 'attention.png'))
        .raw()
        .toBuffer({ resolveWithObject: true });
      assert.equal(attentionMap.info.channels, 4);
      await predictor.close();
    },
  );

  it('predicts a slide from the command line as GeoJSON', needsShared, async () => {
    const t = await testSlide();
    const predictor = await modelAtScale(0.3005);
    const dir = path.join(tempDir(), 'model');
    const { writePackage } = await import('../../src/model/package.js');
    await writePackage(dir, predictor.manifest, await predictor.network.exportTensors());
    const result = await runCli(['predict', '--model', dir, t.file, '--format', 'geojson']);
    assert.equal(result.code, 0, result.stderr);
    const geojson = JSON.parse(result.stdout) as {
      type: string;
      features: unknown[];
      pathotype: { result: { predicted: string } };
    };
    check(result.stdout);
    assert.equal(geojson.type, 'FeatureCollection');
    assert.ok(geojson.features.length > 300);
    const text = await runCli(['predict', '--model', dir, t.file]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /tissue tiles of 32 px at level 0/);
  });
});
