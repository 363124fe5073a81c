/**
 * The slide GeoJSON as QuPath's own reader takes it. The rules below are those of QuPath's source
 * (qupath-core: PathObjectTypeAdapters.PathObjectTypeAdapter.read and GsonTools.PathClassTypeAdapter):
 * - a feature's `id` becomes the object's id only if java.util.UUID.fromString parses it (0.4 on;
 *   anything else is dropped with a debug line, and the object gets a new random id);
 * - `properties.objectType` picks the object type ('detection'; absent: an annotation);
 * - the classification is read by Gson: QuPath before 0.4 maps the JSON onto PathClass's fields
 *   (`name`, `colorRGB`: a Java Integer, the packed ARGB value), 0.4 on reads `name` and `color`
 *   ([r, g, b]), so both are written;
 * - `measurements` is an object of numbers (0.4 on) or a list of {name, value}.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { packedRgb, slideGeoJson, stableUuid, type GeoJsonFeature } from '../../src/predict/slide-geojson.js';
import type { SlidePrediction } from '../../src/predict/slide-predictor.js';

/** java.util.UUID.fromString on Java 11+: five groups of hex digits, 8-4-4-4-12. */
const JAVA_UUID = /^[0-9a-f]{1,8}-[0-9a-f]{1,4}-[0-9a-f]{1,4}-[0-9a-f]{1,4}-[0-9a-f]{1,12}$/i;
const isJavaInt = (v: unknown): v is number =>
  Number.isInteger(v) && (v as number) >= -(2 ** 31) && (v as number) < 2 ** 31;

/** What QuPath keeps of a feature: its id (or null: a new one), type, class name and colour by version, measurements. */
function quPathReads(feature: GeoJsonFeature): {
  id: string | null;
  type: string;
  className: string;
  colour04: [number, number, number] | null;
  colourBefore04: number | null;
  measurements: Record<string, number>;
} {
  const { classification, objectType, measurements } = feature.properties as GeoJsonFeature['properties'] &
    Record<string, unknown>;
  const colour = classification.color as unknown;
  const valid =
    Array.isArray(colour) &&
    colour.length === 3 &&
    colour.every((c) => Number.isInteger(c) && c >= 0 && c <= 255);
  return {
    id: typeof feature.id === 'string' && JAVA_UUID.test(feature.id) ? feature.id : null,
    type: objectType,
    className: classification.name,
    colour04: valid ? (colour as [number, number, number]) : null,
    colourBefore04: isJavaInt(classification.colorRGB) ? classification.colorRGB : null,
    measurements: Object.fromEntries(Object.entries(measurements).filter(([, v]) => typeof v === 'number')),
  };
}

function prediction(path: string): SlidePrediction {
  const tile = (x: number, predicted: number, blurred = false): SlidePrediction['tiles'][number] => ({
    x,
    y: 64,
    size: 32,
    predicted,
    probabilities: [0.7, 0.2, 0.1],
    focus: 0.05,
    densityRatio: 1,
    blurred,
    folded: false,
  });
  return {
    slide: { path, vendor: 'generic-tiff', width: 4000, height: 3000, levels: [], mpp: 1.0667 },
    model: { name: 'm', version: 2, classes: ['CLL', 'FL', 'MCL'], mpp: 1.0667, rule: 'logit' },
    tiling: { size: 32, stride: 32, cols: 3, rows: 1, level: 0 },
    tissue: { fraction: 0.5, tiles: 3, blurred: 1, folded: 0 },
    tiles: [tile(0, 0), tile(32, 2), tile(64, 1, true)],
    result: {} as SlidePrediction['result'],
    timings: { totalMs: 0, maskMs: 0, readMs: 0, inferenceMs: 0 },
  };
}

describe('slide GeoJSON for QuPath', () => {
  it("keeps every id, type, class and colour under QuPath's reader, before 0.4 and after", () => {
    const geojson = slideGeoJson(prediction('/data/slides/patient-7.tiff'));
    const read = geojson.features.map(quPathReads);
    assert.ok(
      read.every((r) => r.id !== null),
      'every id a UUID that QuPath keeps',
    );
    assert.equal(new Set(read.map((r) => r.id)).size, 3, 'one object each');
    assert.deepEqual(
      read.map((r) => [r.type, r.className]),
      [
        ['detection', 'CLL'],
        ['detection', 'MCL'],
        ['detection', 'Ignore*'],
      ],
    );
    for (const r of read) {
      assert.ok(r.colour04 && r.colourBefore04 !== null, 'both colour forms');
      assert.equal(r.colourBefore04, packedRgb(r.colour04), 'the same colour in each');
      assert.equal(r.colourBefore04 >>> 24, 0xff, 'opaque');
    }
    assert.deepEqual(Object.keys(read[0]?.measurements ?? {}), [
      'Probability CLL',
      'Probability FL',
      'Probability MCL',
      'Focus',
      'Density ratio',
    ]);
    // The slide by its file name: no path of the server's disk in what it sends.
    assert.equal(geojson.pathotype.slide, 'patient-7.tiff');
    // The same tile of the same slide by the same model keeps its id; another slide's does not.
    assert.deepEqual(
      slideGeoJson(prediction('/elsewhere/patient-7.tiff')).features.map((f) => f.id),
      geojson.features.map((f) => f.id),
    );
    assert.notEqual(
      slideGeoJson(prediction('/data/slides/patient-8.tiff')).features[0]?.id,
      geojson.features[0]?.id,
    );
  });

  it('writes RFC 4122 version-5 UUIDs, and the reader rule drops the ids pathotype wrote before', () => {
    const id = stableUuid('x');
    assert.match(id, /^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    const old = { ...slideGeoJson(prediction('a.tiff')).features[0], id: 'tile-0' } as GeoJsonFeature;
    assert.equal(quPathReads(old).id, null);
    assert.equal(packedRgb([255, 255, 255]), -1);
    assert.equal(packedRgb([0, 0, 0]), -16777216);
  });
});
