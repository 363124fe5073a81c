/**
 * A slide's annotated regions from GeoJSON as QuPath exports it (File > Export objects as
 * GeoJSON, or exportObjectsToGeoJson): a FeatureCollection or a bare array of features, each a
 * Polygon, MultiPolygon or GeometryCollection of them in level-0 pixel coordinates, its class in
 * `properties.classification.name`. pathotype's own slide export (predict/slide-geojson.ts) is the
 * same format, so it reads back alike. Points and lines outline no region and are skipped.
 *
 * A point's region: outside every region, none; inside a region whose class starts with
 * `Ignore` (QuPath's "Ignore*"), left out whatever else covers it; otherwise the first region in
 * the file that covers it and has a class, else the first that covers it.
 */
import { readFileSync, statSync } from 'node:fs';

import { PathotypeError } from '../errors.js';

/** GeoJSON larger than this is refused before it is read (pathotype's export of a big slide is ~40 MB). */
export const MAX_ANNOTATION_BYTES = 256 * 2 ** 20;

type Ring = readonly (readonly [number, number])[];

export interface AnnotatedRegion {
  /** The classification's name; null for an unclassified region. */
  className: string | null;
  /** Polygons, each its outer ring then its holes. */
  polygons: Ring[][];
  bbox: [number, number, number, number];
}

/** What covers a point: no region, an Ignore* region, or a region (its class, maybe null). */
export type RegionAt =
  { kind: 'outside' } | { kind: 'ignored' } | { kind: 'region'; className: string | null };

function fail(file: string, what: string): never {
  throw new PathotypeError('ERR_ANNOTATIONS', `the annotations ${file} ${what}`);
}

function ringOf(value: unknown, file: string, where: string): Ring {
  if (!Array.isArray(value) || value.length < 4)
    fail(file, `have a polygon ring with fewer than 4 positions (${where})`);
  return value.map((p: unknown) => {
    if (!Array.isArray(p) || typeof p[0] !== 'number' || typeof p[1] !== 'number')
      fail(file, `have a position that is not [x, y] (${where})`);
    return [p[0], p[1]] as const;
  });
}

function polygonsOf(geometry: unknown, file: string, where: string): Ring[][] {
  if (typeof geometry !== 'object' || geometry === null)
    fail(file, `have a feature without geometry (${where})`);
  const g = geometry as { type?: unknown; coordinates?: unknown; geometries?: unknown };
  const rings = (polygon: unknown): Ring[] => {
    if (!Array.isArray(polygon) || polygon.length === 0) fail(file, `have an empty polygon (${where})`);
    return polygon.map((r) => ringOf(r, file, where));
  };
  switch (g.type) {
    case 'Polygon':
      return [rings(g.coordinates)];
    case 'MultiPolygon':
      if (!Array.isArray(g.coordinates)) fail(file, `have a MultiPolygon without coordinates (${where})`);
      return g.coordinates.map(rings);
    case 'GeometryCollection':
      if (!Array.isArray(g.geometries)) fail(file, `have a GeometryCollection without geometries (${where})`);
      return g.geometries.flatMap((c) => polygonsOf(c, file, where));
    case 'Point':
    case 'MultiPoint':
    case 'LineString':
    case 'MultiLineString':
      return [];
    default:
      return fail(file, `have a geometry of unknown type ${JSON.stringify(g.type)} (${where})`);
  }
}

function classNameOf(properties: unknown): string | null {
  if (typeof properties !== 'object' || properties === null) return null;
  const classification = (properties as { classification?: unknown }).classification;
  if (typeof classification === 'string') return classification;
  if (typeof classification !== 'object' || classification === null) return null;
  const name = (classification as { name?: unknown }).name;
  return typeof name === 'string' && name !== '' ? name : null;
}

function bboxOf(polygons: readonly Ring[][]): [number, number, number, number] {
  const box: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const polygon of polygons)
    for (const [x, y] of polygon[0] ?? []) {
      box[0] = Math.min(box[0], x);
      box[1] = Math.min(box[1], y);
      box[2] = Math.max(box[2], x);
      box[3] = Math.max(box[3], y);
    }
  return box;
}

/** The file's regions (features with an area), in file order; ERR_ANNOTATIONS for what is not GeoJSON features. */
export function readAnnotations(file: string): AnnotatedRegion[] {
  let parsed: unknown;
  try {
    if (statSync(file).size > MAX_ANNOTATION_BYTES)
      fail(file, `are larger than ${MAX_ANNOTATION_BYTES / 2 ** 20} MiB`);
    parsed = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    if (cause instanceof PathotypeError) throw cause;
    throw new PathotypeError(
      'ERR_ANNOTATIONS',
      `the annotations ${file} cannot be read as JSON: ${String(cause)}`,
      {
        cause,
      },
    );
  }
  const features: unknown[] | undefined = Array.isArray(parsed)
    ? parsed
    : (parsed as { type?: unknown })?.type === 'FeatureCollection'
      ? ((parsed as { features?: unknown }).features as unknown[] | undefined)
      : (parsed as { type?: unknown })?.type === 'Feature'
        ? [parsed]
        : undefined;
  if (!Array.isArray(features))
    fail(file, 'are neither a GeoJSON FeatureCollection, a Feature nor an array of features');
  const regions: AnnotatedRegion[] = [];
  for (const [i, feature] of features.entries()) {
    const f = feature as { geometry?: unknown; properties?: unknown };
    const polygons = polygonsOf(f?.geometry, file, `feature ${i + 1}`);
    if (polygons.length === 0) continue;
    regions.push({ className: classNameOf(f.properties), polygons, bbox: bboxOf(polygons) });
  }
  return regions;
}

/** Even-odd rule over a polygon's rings: inside the outer ring and outside its holes. */
function insidePolygon(rings: readonly Ring[], x: number, y: number): boolean {
  let inside = false;
  for (const ring of rings)
    for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
      const [xi, yi] = ring[i] as readonly [number, number];
      const [xj, yj] = ring[j] as readonly [number, number];
      if (yi > y !== yj > y && x < ((xj - xi) * (y - yi)) / (yj - yi) + xi) inside = !inside;
    }
  return inside;
}

/** A region covers a point: inside one of its polygons. */
function covers(region: AnnotatedRegion, x: number, y: number): boolean {
  const [x0, y0, x1, y1] = region.bbox;
  if (x < x0 || x > x1 || y < y0 || y > y1) return false;
  return region.polygons.some((p) => insidePolygon(p, x, y));
}

export function isIgnored(className: string | null): boolean {
  return className !== null && className.startsWith('Ignore');
}

/**
 * Looks points up among the regions through a uniform grid of their bounding boxes, so a file of
 * one polygon per tile (pathotype's own export: tens of thousands) costs a few tests per point.
 */
export class RegionIndex {
  readonly #cell: number;
  readonly #buckets = new Map<string, number[]>();

  constructor(readonly regions: readonly AnnotatedRegion[]) {
    const sides = regions
      .map((r) => Math.max(r.bbox[2] - r.bbox[0], r.bbox[3] - r.bbox[1]))
      .sort((a, b) => a - b);
    // About a median region per cell: small regions share few cells, a big one spans many.
    this.#cell = Math.max(16, sides[Math.floor(sides.length / 2)] ?? 16);
    for (const [i, r] of regions.entries()) {
      const [cx0, cy0, cx1, cy1] = r.bbox.map((v) => Math.floor(v / this.#cell)) as [
        number,
        number,
        number,
        number,
      ];
      // A region larger than 4096 cells is rare (one whole-tissue outline); it is tested from every point of its box.
      if ((cx1 - cx0 + 1) * (cy1 - cy0 + 1) > 4096) {
        this.#bucket('all').push(i);
        continue;
      }
      for (let cy = cy0; cy <= cy1; cy++)
        for (let cx = cx0; cx <= cx1; cx++) this.#bucket(`${cx},${cy}`).push(i);
    }
  }

  #bucket(key: string): number[] {
    return this.#buckets.get(key) ?? this.#buckets.set(key, []).get(key) ?? [];
  }

  /** What covers the point (x, y): see the module's rule. */
  at(x: number, y: number): RegionAt {
    const key = `${Math.floor(x / this.#cell)},${Math.floor(y / this.#cell)}`;
    const candidates = [...(this.#buckets.get(key) ?? []), ...(this.#buckets.get('all') ?? [])].sort(
      (a, b) => a - b,
    );
    let first: AnnotatedRegion | undefined;
    let classified: AnnotatedRegion | undefined;
    for (const i of candidates) {
      const region = this.regions[i] as AnnotatedRegion;
      if (!covers(region, x, y)) continue;
      if (isIgnored(region.className)) return { kind: 'ignored' };
      first ??= region;
      if (region.className !== null) classified ??= region;
    }
    const found = classified ?? first;
    return found ? { kind: 'region', className: found.className } : { kind: 'outside' };
  }
}
