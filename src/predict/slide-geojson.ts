/**
 * A slide prediction as GeoJSON that QuPath imports (File > Import objects, or
 * PathIO.readObjects): a FeatureCollection in level-0 pixel coordinates, one detection per tile
 * with its classification and the class probabilities as measurements, the way QuPath itself
 * exports detections. What QuPath's reader (PathObjectTypeAdapters, GsonTools.PathClassTypeAdapter)
 * requires: a feature id that java.util.UUID.fromString parses (0.4 and later discard any other
 * id); the class colour as QuPath 0.4+ writes it (`color`: [r, g, b]) and as earlier versions
 * read it (`colorRGB`: the packed ARGB value as a Java int). The slide-level answer rides along as
 * a foreign member (RFC 7946, section 6.1), which readers ignore; the slide by its file name only.
 */
import { createHash } from 'node:crypto';
import path from 'node:path';

import { classColour } from './heatmap.js';
import type { SlidePrediction } from './slide-predictor.js';

const BLURRED_COLOUR: [number, number, number] = [160, 160, 160];

export interface GeoJsonFeature {
  type: 'Feature';
  id: string;
  geometry: { type: 'Polygon'; coordinates: [number, number][][] };
  properties: {
    objectType: 'detection';
    classification: QuPathClass;
    measurements: Record<string, number>;
  };
}

/** A QuPath classification in both colour forms. */
export interface QuPathClass {
  name: string;
  color: [number, number, number];
  colorRGB: number;
}

/** QuPath's ColorTools.packRGB: opaque ARGB in one Java (signed 32-bit) int. */
export function packedRgb([r, g, b]: readonly [number, number, number]): number {
  return (0xff << 24) | (r << 16) | (g << 8) | b | 0;
}

function quPathClass(name: string, color: [number, number, number]): QuPathClass {
  return { name, color, colorRGB: packedRgb(color) };
}

/**
 * A name-based UUID (RFC 4122 version 5 layout over SHA-1): the same tile of the same slide by
 * the same model keeps its id across exports, so a re-import updates the objects it made.
 */
export function stableUuid(name: string): string {
  const bytes = createHash('sha1').update(name).digest().subarray(0, 16);
  bytes[6] = ((bytes[6] ?? 0) & 0x0f) | 0x50;
  bytes[8] = ((bytes[8] ?? 0) & 0x3f) | 0x80;
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}

export interface SlideGeoJson {
  type: 'FeatureCollection';
  features: GeoJsonFeature[];
  pathotype: {
    slide: string;
    model: string;
    mpp: { slide: number; model: number };
    result: SlidePrediction['result'];
  };
}

export function slideGeoJson(prediction: SlidePrediction): SlideGeoJson {
  const { classes } = prediction.model;
  const slide = path.basename(prediction.slide.path);
  const model = `${prediction.model.name}@${prediction.model.version}`;
  return {
    type: 'FeatureCollection',
    features: prediction.tiles.map((tile) => {
      const { x, y, size } = tile;
      return {
        type: 'Feature',
        id: stableUuid(`pathotype:${model}:${slide}:${x},${y},${size}`),
        geometry: {
          type: 'Polygon',
          // Closed exterior ring, counter-clockwise by the numbers (RFC 7946) as QuPath writes it.
          coordinates: [
            [
              [x, y],
              [x + size, y],
              [x + size, y + size],
              [x, y + size],
              [x, y],
            ],
          ],
        },
        properties: {
          objectType: 'detection',
          // A blurred or folded tile is QuPath's Ignore* class: shown, and left out of its measurements.
          classification:
            tile.blurred || tile.folded
              ? quPathClass('Ignore*', BLURRED_COLOUR)
              : quPathClass(classes[tile.predicted] ?? '', classColour(tile.predicted)),
          measurements: {
            ...Object.fromEntries(classes.map((c, i) => [`Probability ${c}`, tile.probabilities[i] ?? 0])),
            Focus: tile.focus,
            'Density ratio': tile.densityRatio,
            ...(tile.attention === undefined ? {} : { Attention: tile.attention }),
          },
        },
      };
    }),
    pathotype: {
      slide,
      model,
      mpp: { slide: prediction.slide.mpp, model: prediction.model.mpp },
      result: prediction.result,
    },
  };
}
