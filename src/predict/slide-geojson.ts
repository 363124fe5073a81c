/**
 * A slide prediction as GeoJSON that QuPath imports (File > Import objects, or
 * PathIO.readObjects): a FeatureCollection in level-0 pixel coordinates, one detection per tile
 * with its classification {name, color} and the class probabilities as measurements, the way
 * QuPath itself exports detections. The slide-level answer rides along as a foreign member
 * (RFC 7946, section 6.1), which readers ignore.
 */
import { classColour } from './heatmap.js';
import type { SlidePrediction } from './slide-predictor.js';

const BLURRED_COLOUR: [number, number, number] = [160, 160, 160];

export interface GeoJsonFeature {
  type: 'Feature';
  id: string;
  geometry: { type: 'Polygon'; coordinates: [number, number][][] };
  properties: {
    objectType: 'detection';
    classification: { name: string; color: [number, number, number] };
    measurements: Record<string, number>;
  };
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
  return {
    type: 'FeatureCollection',
    features: prediction.tiles.map((tile, k) => {
      const { x, y, size } = tile;
      return {
        type: 'Feature',
        id: `tile-${k}`,
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
              ? { name: 'Ignore*', color: BLURRED_COLOUR }
              : { name: classes[tile.predicted] ?? '', color: classColour(tile.predicted) },
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
      slide: prediction.slide.path,
      model: `${prediction.model.name}@${prediction.model.version}`,
      mpp: { slide: prediction.slide.mpp, model: prediction.model.mpp },
      result: prediction.result,
    },
  };
}
