/**
 * Annotated regions as QuPath exports them (a FeatureCollection, or a bare array of features from
 * older versions; Polygon with holes, MultiPolygon; the class in classification.name), looked up
 * by point: Ignore* wins over what it overlaps, a classified region over an unclassified one.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { PathotypeError } from '../../src/errors.js';
import { readAnnotations, RegionIndex } from '../../src/slide/annotations.js';
import { tempDir } from '../fixtures.js';

const square = (x: number, y: number, side: number): number[][] => [
  [x, y],
  [x + side, y],
  [x + side, y + side],
  [x, y + side],
  [x, y],
];

function write(value: unknown): string {
  const file = path.join(tempDir(), 'annotations.geojson');
  writeFileSync(file, JSON.stringify(value));
  return file;
}

describe('annotations (QuPath GeoJSON)', () => {
  it('reads a FeatureCollection and a bare array alike, with holes, MultiPolygons and classes', () => {
    const features = [
      {
        type: 'Feature',
        geometry: { type: 'Polygon', coordinates: [square(0, 0, 100), square(40, 40, 20)] },
        properties: { objectType: 'annotation', classification: { name: 'FL', colorRGB: -16776961 } },
      },
      {
        type: 'Feature',
        geometry: { type: 'MultiPolygon', coordinates: [[square(200, 0, 50)], [square(300, 0, 50)]] },
        properties: { objectType: 'annotation' },
      },
      {
        type: 'Feature',
        geometry: { type: 'Polygon', coordinates: [square(80, 80, 40)] },
        properties: { classification: { name: 'Ignore*', color: [180, 180, 180] } },
      },
      { type: 'Feature', geometry: { type: 'Point', coordinates: [5, 5] }, properties: {} },
    ];
    for (const file of [write({ type: 'FeatureCollection', features }), write(features)]) {
      const regions = readAnnotations(file);
      assert.deepEqual(
        regions.map((r) => r.className),
        ['FL', null, 'Ignore*'],
        'the point outlines no region',
      );
      const index = new RegionIndex(regions);
      assert.deepEqual(index.at(10, 10), { kind: 'region', className: 'FL' });
      assert.deepEqual(index.at(50, 50), { kind: 'outside' }, 'in the hole');
      assert.deepEqual(index.at(90, 90), { kind: 'ignored' }, 'Ignore* over FL');
      assert.deepEqual(index.at(325, 25), { kind: 'region', className: null });
      assert.deepEqual(index.at(275, 25), { kind: 'outside' });
    }
  });

  it('prefers a classified region where an unclassified one overlaps it', () => {
    const file = write([
      { type: 'Feature', geometry: { type: 'Polygon', coordinates: [square(0, 0, 1000)] }, properties: {} },
      {
        type: 'Feature',
        geometry: { type: 'Polygon', coordinates: [square(10, 10, 10)] },
        properties: { classification: { name: 'MCL' } },
      },
    ]);
    const index = new RegionIndex(readAnnotations(file));
    assert.deepEqual(index.at(15, 15), { kind: 'region', className: 'MCL' });
    assert.deepEqual(index.at(500, 500), { kind: 'region', className: null });
  });

  it('refuses what is not GeoJSON features with ERR_ANNOTATIONS, naming the file', () => {
    for (const bad of [
      'not json',
      { type: 'Topology' },
      [
        {
          type: 'Feature',
          geometry: {
            type: 'Polygon',
            coordinates: [
              [
                [0, 0],
                [1, 1],
              ],
            ],
          },
        },
      ],
    ]) {
      const file = typeof bad === 'string' ? path.join(tempDir(), 'bad.geojson') : write(bad);
      if (typeof bad === 'string') writeFileSync(file, bad);
      assert.throws(
        () => readAnnotations(file),
        (e: unknown) =>
          e instanceof PathotypeError && e.code === 'ERR_ANNOTATIONS' && e.message.includes(file),
      );
    }
  });
});
