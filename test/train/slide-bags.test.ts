/**
 * Slide bags: two small mosaic slides of development fields, their tiles' features extracted
 * once with a small zoo base, read back, and checked against the slide predictor: the same
 * tiles (coords), judged alike, and each tile's features the ones the predictor's network pools
 * before its classifier (its probabilities are the classifier on the bag's features). With
 * annotations, only tiles in their regions, labelled by the region's class.
 */
import assert from 'node:assert/strict';
import { statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { Catalog, type SlideRecord } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importSlideManifest } from '../../src/acquire/slide-manifest.js';
import { writeMosaicSlide, writePatientSlides } from '../../src/acquire/slide-mosaic.js';
import { Network } from '../../src/engine/network.js';
import { featureSpec } from '../../src/engine/zoo.js';
import type { Predictor } from '../../src/predict/predictor.js';
import { slideGeoJson } from '../../src/predict/slide-geojson.js';
import { predictSlide } from '../../src/predict/slide-predictor.js';
import { softmax } from '../../src/predict/vote.js';
import { zooFeatures, type ProbeFeatures } from '../../src/train/probe.js';
import {
  extractSlideBags,
  readSlideBag,
  type SlideBag,
  type SlideBagProgress,
} from '../../src/train/slide-bags.js';
import { workspaceAt, type Workspace } from '../../src/workspace.js';
import { tempDir } from '../fixtures.js';
import { fieldsOf } from '../slide-fixtures.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { modelAtScale } from '../model-at-scale.js';

const needsShared = { skip: !hasShared(lymphomaDir) && 'needs ../shared' };
const CLASSES = ['CLL', 'FL', 'MCL'];

let workspace: Workspace;
let slides: SlideRecord[];
let predictor: Predictor;
let features: ProbeFeatures;

describe('slide bags', needsShared, () => {
  before(async () => {
    const dir = tempDir();
    const { manifest } = await writePatientSlides(lymphomaDir, path.join(dir, 'slides'), {
      groupBy: parseGroupRule('patient'),
      patients: ['sj-03-2810', 'sj-05-1467'],
      maxFields: 2,
      twoSlidesFrom: 99,
    });
    workspace = workspaceAt(path.join(dir, 'workspace'));
    const catalog = Catalog.open(workspace);
    try {
      await importSlideManifest(catalog, manifest, { classes: CLASSES });
      slides = catalog.slides();
    } finally {
      catalog.close();
    }
    // A random small CNN at the slides' own scale; its base (classifier cut) gives the features.
    predictor = await modelAtScale(0.3005);
    const base = await Network.create(featureSpec(predictor.manifest.spec));
    await base.importTensors(await predictor.network.exportTensors(), { strict: false });
    features = await zooFeatures(base, { pretrained: null, bf16: false, engine: 'addon' });
  });
  after(async () => {
    await features.runner.close();
  });

  it('extracts each slide once, on the predictor tiles, and reads them back', async () => {
    const progress: SlideBagProgress[] = [];
    const request = {
      workspace,
      slides,
      classes: CLASSES,
      preprocess: predictor.manifest.preprocess,
      features,
      onProgress: (p: SlideBagProgress) => progress.push(p),
    };
    const first = await extractSlideBags(request);
    assert.equal(first.extracted, 2);
    assert.deepEqual(first.excluded, []);
    assert.deepEqual(
      first.bags.map((b) => b.slide.patient),
      slides.map((s) => s.patient),
    );
    const last = progress.at(-1);
    assert.equal(last?.slides, 2);
    assert.equal(last?.slidesTotal, 2);
    assert.ok((last?.tiles ?? 0) > 100 && (last?.tilesPerSecond ?? 0) > 0, JSON.stringify(last));

    // The head of the predictor's network: probabilities = softmax(W f + b) of a bag's features.
    const tensors = await predictor.network.exportTensors();
    const weight = tensors.find((t) => t.name === 'predictions.weight')?.data ?? new Float32Array();
    const bias = tensors.find((t) => t.name === 'predictions.bias')?.data ?? new Float32Array();
    for (const file of first.bags) {
      const bag = await readSlideBag(file);
      assert.equal(bag.dims, features.dims);
      assert.equal(bag.count, file.count);
      assert.equal(bag.features.length, bag.count * bag.dims);
      assert.ok(Math.abs(bag.tileSize0 - 32) < 1e-3, String(bag.tileSize0));
      assert.ok(
        bag.regionLabels.every((l) => l === -1),
        'no annotations: the slide label',
      );

      // At the catalog's microns per pixel, as the bag was cut (the manifest's, not the file's rounding of it).
      const prediction = await predictSlide(predictor, file.slide.path, { slideMpp: file.slide.mpp });
      const clear = prediction.tiles.filter((t) => !t.blurred && !t.folded);
      const key = (x: number, y: number): string => `${x},${y}`;
      const byCoord = new Map(clear.map((t) => [key(t.x, t.y), t]));
      assert.equal(bag.count, clear.length, 'the tiles that pass the checks');
      assert.equal(file.quality.tiles, prediction.tissue.tiles);
      assert.equal(file.quality.refused.focus, prediction.tissue.blurred);
      assert.equal(file.quality.refused.fold, prediction.tissue.folded);
      assert.ok(file.quality.tissueMm2 > 0.1, String(file.quality.tissueMm2));
      for (let k = 0; k < bag.count; k++) {
        const tile = byCoord.get(key(bag.coords[k * 2] ?? -1, bag.coords[k * 2 + 1] ?? -1));
        assert.ok(tile, `bag tile ${k} is one of the predictor's`);
        const f = bag.features.subarray(k * bag.dims, (k + 1) * bag.dims);
        const logits = [0, 1, 2].map((c) => {
          let s = bias[c] ?? 0;
          for (let d = 0; d < bag.dims; d++) s += (weight[c * bag.dims + d] ?? 0) * (f[d] ?? 0);
          return s;
        });
        const expected = softmax(logits);
        for (let c = 0; c < 3; c++)
          assert.ok(
            Math.abs((tile.probabilities[c] ?? 0) - (expected[c] ?? 0)) < 2e-3,
            `tile ${k} class ${c}: ${tile.probabilities[c]} vs ${expected[c]}`,
          );
      }
    }

    // Again: every bag comes from the cache, its file untouched.
    const mtimes = first.bags.map((b) => statSync(b.file).mtimeMs);
    const again = await extractSlideBags(request);
    assert.equal(again.extracted, 0);
    assert.equal(again.cached, 2);
    assert.deepEqual(
      again.bags.map((b) => statSync(b.file).mtimeMs),
      mtimes,
    );
  });

  it('leaves out a slide with too few usable tiles, saying why', async () => {
    const result = await extractSlideBags({
      workspace,
      slides,
      classes: CLASSES,
      preprocess: predictor.manifest.preprocess,
      features,
      minUsableTiles: 100_000,
    });
    assert.equal(result.bags.length, 0);
    assert.equal(result.excluded.length, 2);
    for (const e of result.excluded) {
      assert.match(e.reason, /usable tiles of \d+ tissue tiles .*mm\^2.*at least 100000 are needed/);
      assert.equal(e.quality.excluded, e.reason);
    }
  });

  it('drops the tiles the checks refuse, and counts them per check', async () => {
    const dir = tempDir();
    const [field = ''] = fieldsOf('CLL', 1);
    const blurred = path.join(dir, 'blurred.png');
    await sharp(field).blur(3).toFile(blurred);
    const file = path.join(dir, 'half-blurred.tif');
    const mosaic = await writeMosaicSlide(
      file,
      [null, null, null, null, null, field, blurred, null, null, null, null, null],
      {
        across: 4,
      },
    );
    const slide: SlideRecord = {
      ...(slides[0] as SlideRecord),
      id: 99,
      path: file,
      source: file,
      mpp: mosaic.mpp,
      width: mosaic.width,
      height: mosaic.height,
    };
    const result = await extractSlideBags({
      workspace,
      slides: [slide],
      classes: CLASSES,
      preprocess: predictor.manifest.preprocess,
      features,
    });
    const [bagFile] = result.bags;
    assert.ok(bagFile, JSON.stringify(result.excluded));
    const bag = await readSlideBag(bagFile);
    const prediction = await predictSlide(predictor, file, { slideMpp: slide.mpp });
    const clear = new Set(
      prediction.tiles.filter((t) => !t.blurred && !t.folded).map((t) => `${t.x},${t.y}`),
    );
    assert.ok(prediction.tissue.blurred > 50, `${prediction.tissue.blurred} blurred tiles`);
    assert.equal(bag.quality.refused.focus, prediction.tissue.blurred);
    assert.equal(bag.quality.tiles, prediction.tissue.tiles);
    assert.equal(bag.count, clear.size);
    for (let k = 0; k < bag.count; k++) assert.ok(clear.has(`${bag.coords[k * 2]},${bag.coords[k * 2 + 1]}`));
  });

  /** A bag of `slide` with these annotations (a GeoJSON value, written to a file beside the workspace). */
  async function annotatedBag(slide: SlideRecord, geojson: unknown): Promise<SlideBag> {
    const file = path.join(workspace.root, `annotations-${Math.random().toString(36).slice(2)}.geojson`);
    writeFileSync(file, JSON.stringify(geojson));
    const result = await extractSlideBags({
      workspace,
      slides: [{ ...slide, annotations: file }],
      classes: CLASSES,
      preprocess: predictor.manifest.preprocess,
      features,
      minUsableTiles: 1,
    });
    const [bag] = result.bags;
    assert.ok(bag, JSON.stringify(result.excluded));
    return readSlideBag(bag);
  }

  const rect = (x0: number, y0: number, x1: number, y1: number, name?: string): unknown => ({
    type: 'Feature',
    geometry: {
      type: 'Polygon',
      coordinates: [
        [
          [x0, y0],
          [x1, y0],
          [x1, y1],
          [x0, y1],
          [x0, y0],
        ],
      ],
    },
    properties: {
      objectType: 'annotation',
      ...(name ? { classification: { name, color: [0, 0, 255] } } : {}),
    },
  });

  it('keeps only tiles inside annotated regions, leaves Ignore* out, and labels tiles by their region class', async () => {
    const slide = slides[0] as SlideRecord;
    // The mosaic's two fields: x 417-834 and 834-1251, y 312-624 (a glass margin around them).
    const bag = await annotatedBag(slide, {
      type: 'FeatureCollection',
      features: [
        rect(417, 312, 834, 624, 'FL'),
        rect(417, 312, 517, 412, 'Ignore*'),
        rect(834, 312, 1000, 624, 'Tumor'),
      ],
    });
    const half = bag.tileSize0 / 2;
    const labels = new Map<string, number>();
    for (let k = 0; k < bag.count; k++) {
      const x = (bag.coords[k * 2] ?? 0) + half;
      const y = (bag.coords[k * 2 + 1] ?? 0) + half;
      const label = bag.regionLabels[k] ?? -2;
      assert.ok(x >= 417 && x <= 1000 && y >= 312 && y <= 624, `tile centre ${x},${y} outside the regions`);
      assert.ok(!(x <= 517 && y <= 412), `tile centre ${x},${y} under Ignore*`);
      assert.equal(label, x <= 834 ? CLASSES.indexOf('FL') : -1, `tile centre ${x},${y}`);
      labels.set(String(label), (labels.get(String(label)) ?? 0) + 1);
    }
    assert.ok((labels.get('1') ?? 0) > 50 && (labels.get('-1') ?? 0) > 20, JSON.stringify([...labels]));
    const q = bag.quality;
    assert.ok(q.outsideAnnotations > 50, String(q.outsideAnnotations));
    const refused = Object.values(q.refused).reduce((a, b) => a + b, 0);
    assert.equal(q.usable, bag.count);
    assert.ok(
      q.usable + q.outsideAnnotations + refused >= q.tiles && q.usable + q.outsideAnnotations <= q.tiles,
    );

    // A file of Ignore* regions alone keeps everything else.
    const ignoring = await annotatedBag(slide, [rect(417, 312, 834, 624, 'Ignore*')]);
    assert.ok(ignoring.count > 50);
    for (let k = 0; k < ignoring.count; k++) assert.ok((ignoring.coords[k * 2] ?? 0) + half > 834);
  });

  it("reads pathotype's own slide GeoJSON back: its tiles, each labelled by its predicted class, its Ignore* tiles left out", async () => {
    const slide = slides[1] as SlideRecord;
    const prediction = await predictSlide(predictor, slide.path, { slideMpp: slide.mpp });
    const bag = await annotatedBag(slide, slideGeoJson(prediction));
    const byCoord = new Map(prediction.tiles.map((t) => [`${t.x},${t.y}`, t]));
    const clear = prediction.tiles.filter((t) => !t.blurred && !t.folded);
    assert.equal(bag.count, clear.length);
    for (let k = 0; k < bag.count; k++) {
      const tile = byCoord.get(`${bag.coords[k * 2]},${bag.coords[k * 2 + 1]}`);
      assert.ok(tile && !tile.blurred && !tile.folded);
      assert.equal(bag.regionLabels[k], tile.predicted);
    }
  });
});
