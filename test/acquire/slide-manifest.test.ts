/**
 * Slide manifests and the per-patient mosaic slides they are tested on: every check runs before
 * anything is written, each bad row is named, and a failed import leaves the catalog as it was.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { Catalog } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importSlideManifest, parseCsv, readSlideManifest } from '../../src/acquire/slide-manifest.js';
import { MPP_03X, writePatientSlides, type PatientSlide } from '../../src/acquire/slide-mosaic.js';
import { PathotypeError } from '../../src/errors.js';
import { Slide } from '../../src/slide/slide.js';
import { workspaceAt } from '../../src/workspace.js';
import { lymphomaDir } from '../helpers.js';

const CLASSES = ['CLL', 'FL', 'MCL'];
let dir: string;
let slides: PatientSlide[];

function manifest(name: string, lines: string[]): string {
  const file = path.join(dir, name);
  writeFileSync(file, lines.join('\n') + '\n');
  return file;
}

async function manifestError(file: string, classes = CLASSES): Promise<string> {
  const error = await readSlideManifest(file, { classes }).then(
    () => assert.fail('the manifest was accepted'),
    (e: unknown) => e,
  );
  assert.ok(error instanceof PathotypeError);
  assert.equal(error.code, 'ERR_MANIFEST');
  return error.message;
}

/** Sets every IFD's ResolutionUnit (tag 296) to 1, 'no absolute unit', in a little-endian TIFF. */
function withoutResolutionUnit(tiff: Buffer): Buffer {
  let ifd = tiff.readUInt32LE(4);
  while (ifd !== 0) {
    const count = tiff.readUInt16LE(ifd);
    for (let i = 0; i < count; i++) {
      const at = ifd + 2 + i * 12;
      if (tiff.readUInt16LE(at) === 296) tiff.writeUInt16LE(1, at + 8);
    }
    ifd = tiff.readUInt32LE(ifd + 2 + count * 12);
  }
  return tiff;
}

describe('per-patient mosaic slides', () => {
  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'pathotype-manifest-'));
    ({ slides } = await writePatientSlides(lymphomaDir, dir, {
      groupBy: parseGroupRule('patient'),
      patients: ['sj-03-2810', 'sj-05-1467'],
      maxFields: 2,
      cellSize: [104, 78],
    }));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes two slides of alternate fields per patient, readable with their mpp', async () => {
    assert.deepEqual(
      slides.map((s) => [s.slide, s.patient, s.label, s.fields]),
      [
        ['sj-03-2810-a.tiff', 'sj-03-2810', 'CLL', 2],
        ['sj-03-2810-b.tiff', 'sj-03-2810', 'CLL', 2],
        ['sj-05-1467-a.tiff', 'sj-05-1467', 'FL', 2],
        ['sj-05-1467-b.tiff', 'sj-05-1467', 'FL', 2],
      ],
    );
    const slide = await Slide.open(path.join(dir, 'sj-03-2810-a.tiff'));
    try {
      assert.equal(slide.info.vendor, 'generic-tiff');
      assert.ok(Math.abs((slide.info.mpp ?? 0) - MPP_03X) < 1e-3, `mpp ${slide.info.mpp}`);
      // two fields side by side inside a margin of glass: 4 x 3 cells
      assert.deepEqual([slide.info.width, slide.info.height], [4 * 104, 3 * 78]);
    } finally {
      await slide.close();
    }
    const entries = await readSlideManifest(path.join(dir, 'manifest.csv'), { classes: CLASSES });
    assert.deepEqual(
      entries.map((e) => path.basename(e.path)),
      slides.map((s) => s.slide),
    );
  });

  it('keeps a patient with fewer fields than the two-slide threshold on one slide', async () => {
    const one = path.join(dir, 'one');
    const result = await writePatientSlides(lymphomaDir, one, {
      groupBy: parseGroupRule('patient'),
      patients: ['sj-03-2810'],
      maxFields: 3,
      twoSlidesFrom: 100,
      cellSize: [104, 78],
    });
    assert.deepEqual(
      result.slides.map((s) => [s.slide, s.fields]),
      [['sj-03-2810.tiff', 3]],
    );
  });

  it('parses quoted cells with commas, quotes and line breaks', () => {
    assert.deepEqual(parseCsv('a,"b,c","d ""e""\nf"\r\n1,2,3\n\n'), [
      ['a', 'b,c', 'd "e"\nf'],
      ['1', '2', '3'],
    ]);
  });

  it('names each bad row: missing, unreadable, unknown label, twice, bad numbers', async () => {
    writeFileSync(path.join(dir, 'junk.tiff'), 'not a slide');
    writeFileSync(path.join(dir, 'notes.geojson'), '{"type": "Topology"}');
    const message = await manifestError(
      manifest('bad.csv', [
        'slide,patient,label,mpp,fold,annotations',
        'sj-03-2810-a.tiff,sj-03-2810,CLL,,,',
        'missing.svs,p1,CLL,,',
        'junk.tiff,p2,CLL,,',
        'sj-05-1467-a.tiff,sj-05-1467,DLBCL,,',
        'sj-03-2810-a.tiff,sj-03-2810,CLL,,',
        'sj-03-2810-b.tiff,sj-03-2810,CLL,-1,',
        'sj-05-1467-b.tiff,sj-05-1467,FL,,1.5',
        'sj-05-1467-a.tiff,sj-05-1467,FL,,,notes.geojson',
      ]),
    );
    assert.match(message, /7 problem\(s\); nothing was imported/);
    assert.match(message, /line 9: the annotations .*notes\.geojson are neither a GeoJSON FeatureCollection/);
    assert.match(message, /line 3: slide .*missing\.svs does not exist/);
    assert.match(message, /line 4: slide .*junk\.tiff cannot be read/);
    assert.match(message, /line 5: label 'DLBCL' is not one of the classes CLL, FL, MCL/);
    assert.match(message, /line 6: slide .*sj-03-2810-a\.tiff is already on line 2/);
    assert.match(message, /line 7: mpp '-1' is not a positive number/);
    assert.match(message, /line 8: fold '1\.5' is not a non-negative integer/);
    assert.doesNotMatch(message, /line 2:/);
  });

  it('refuses a patient with two labels', async () => {
    const message = await manifestError(
      manifest('two-labels.csv', [
        'slide,patient,label',
        'sj-03-2810-a.tiff,sj-03-2810,CLL',
        'sj-03-2810-b.tiff,sj-03-2810,MCL',
      ]),
    );
    assert.match(message, /line 3: patient sj-03-2810 is labelled MCL here and CLL on line 2/);
  });

  it('refuses a slide whose scale is unknown, and accepts it with an mpp column', async () => {
    // a tiled TIFF whose resolution has no unit: nothing says how large a pixel is
    const bare = path.join(dir, 'bare.tiff');
    const tiff = await sharp({ create: { width: 300, height: 300, channels: 3, background: '#f4f4f2' } })
      .tiff({ tile: true, pyramid: true, tileWidth: 256, tileHeight: 256 })
      .toBuffer();
    writeFileSync(bare, withoutResolutionUnit(tiff));
    const opened = await Slide.open(bare);
    const stated = opened.info.mpp;
    await opened.close();
    assert.equal(stated, null);
    {
      const message = await manifestError(manifest('bare.csv', ['slide,patient,label', 'bare.tiff,p9,CLL']));
      assert.match(message, /line 2: slide .*bare\.tiff does not state its microns per pixel/);
    }
    const [entry] = await readSlideManifest(
      manifest('bare-mpp.csv', ['slide,patient,label,mpp', 'bare.tiff,p9,CLL,0.5']),
    );
    assert.equal(entry?.mpp, 0.5);
  });

  it('refuses a manifest without the needed columns', async () => {
    const message = await manifestError(manifest('columns.csv', ['path,label', 'a.svs,CLL']));
    assert.match(message, /lacks the column\(s\) slide, patient/);
  });

  it('imports all rows or none, and checks patients against the slides already catalogued', async () => {
    const catalog = Catalog.open(workspaceAt(path.join(dir, 'workspace')));
    try {
      await assert.rejects(
        importSlideManifest(
          catalog,
          manifest('half.csv', [
            'slide,patient,label',
            'sj-03-2810-a.tiff,sj-03-2810,CLL',
            'missing.svs,p1,CLL',
          ]),
        ),
        { code: 'ERR_MANIFEST' },
      );
      assert.equal(catalog.slides().length, 0);
      assert.equal(catalog.history().length, 0);

      const report = await importSlideManifest(catalog, path.join(dir, 'manifest.csv'), { classes: CLASSES });
      assert.deepEqual([report.added, report.slides, report.patients], [4, 4, 2]);
      assert.deepEqual(report.perClass, { CLL: 2, FL: 2 });
      const again = await importSlideManifest(catalog, path.join(dir, 'manifest.csv'));
      assert.deepEqual([again.added, again.updated], [0, 4]);
      assert.deepEqual(
        catalog.slides().map((s) => [path.basename(s.path), s.patient, s.label]),
        slides.map((s) => [s.slide, s.patient, s.label]),
      );

      await assert.rejects(
        importSlideManifest(
          catalog,
          manifest('relabel.csv', ['slide,patient,label,mpp', 'bare.tiff,sj-05-1467,MCL,0.5']),
        ),
        /patient sj-05-1467 is labelled MCL here and FL on the catalog's slide/,
      );
      assert.equal(catalog.slides().length, 4);
    } finally {
      catalog.close();
    }
  });
});
