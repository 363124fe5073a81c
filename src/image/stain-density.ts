/**
 * How strongly a field is stained: the mean haematoxylin and eosin optical densities of its
 * tissue (Ruifrok and Johnston's colour deconvolution, the vectors of scikit-image's rgb2hed).
 * A scanner, a stainer or a laboratory that changes shows here first, so the drift page follows
 * both against the training images'. Measured on the decoded image, before any normalisation.
 */
import type { RgbImage } from './image-io.js';
import { HED_FROM_RGB, OPTICAL_DENSITY } from './stain-vectors.js';
import { isGlass, luminanceChroma } from './tissue.js';

export interface StainDensity {
  haematoxylin: number;
  eosin: number;
}

/** Pixels read at most: a stride over larger images, as the tissue statistics do. */
const SAMPLED_PIXELS = 250_000;

export function stainDensity(image: RgbImage): StainDensity {
  const { data, width, height } = image;
  const pixels = width * height;
  const step = Math.max(1, Math.floor(pixels / SAMPLED_PIXELS));
  const [h0 = 0, h1 = 0, h2 = 0] = HED_FROM_RGB.map((row) => row[0] ?? 0);
  const [e0 = 0, e1 = 0, e2 = 0] = HED_FROM_RGB.map((row) => row[1] ?? 0);
  let tissue = 0;
  let haematoxylin = 0;
  let eosin = 0;
  for (let p = 0; p < pixels; p += step) {
    const [luminance, chroma] = luminanceChroma(data, p);
    if (isGlass(luminance, chroma)) continue;
    const r = OPTICAL_DENSITY[data[p * 3] ?? 0] ?? 0;
    const g = OPTICAL_DENSITY[data[p * 3 + 1] ?? 0] ?? 0;
    const b = OPTICAL_DENSITY[data[p * 3 + 2] ?? 0] ?? 0;
    tissue++;
    haematoxylin += Math.max(0, r * h0 + g * h1 + b * h2);
    eosin += Math.max(0, r * e0 + g * e1 + b * e2);
  }
  return tissue === 0
    ? { haematoxylin: 0, eosin: 0 }
    : { haematoxylin: haematoxylin / tissue, eosin: eosin / tissue };
}
