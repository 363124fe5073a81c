/**
 * Per-image colour normalisation, fitted once and applied everywhere (prepare, predict, serve):
 * - percentile: per-channel stretch of the [low, high] percentiles to 0..255 (the KNIME
 *   workflow's normaliser); needs no reference.
 * - reinhard (reinhard.ts): matches mean and spread of each CIE L*a*b* channel to a reference
 *   image's (Reinhard et al. 2001).
 * - macenko (macenko.ts): estimates the image's haematoxylin and eosin stain vectors in optical
 *   density and re-renders it with the reference's stains and concentration range (Macenko et
 *   al. 2009).
 * - haematoxylin: colour deconvolution (Ruifrok & Johnston) keeps the nuclear stain only, as a
 *   grey image stretched to its own 99th percentile: staining differences in eosin disappear.
 * Fitted parameters are plain JSON, stored with patch stores and model packages.
 */
import { ConfigError } from '../errors.js';
import type { RgbImage } from './image-io.js';
import { applyMacenko, fitStains, MACENKO_DEFAULT, type StainFit } from './macenko.js';
import { applyReinhard, averageLabStats, labStats, type LabStats } from './reinhard.js';
import { clampByte, percentile, sampleStep } from './sampling.js';
import { HED_FROM_RGB } from './stain-vectors.js';

export const NORMALISATION_METHODS = [
  'none',
  'percentile',
  'reinhard',
  'macenko',
  'haematoxylin',
  'grey',
] as const;
export type NormalisationMethod = (typeof NORMALISATION_METHODS)[number];

export type Normaliser =
  | { method: 'none' }
  | { method: 'percentile'; low: number; high: number }
  /** The haematoxylin (nuclear) stain alone, by colour deconvolution, as grey: eosin and its variation gone. */
  | { method: 'haematoxylin'; high: number }
  /** Luminance alone, stretched between its own low and high percentiles: colour and brightness gone. */
  | { method: 'grey'; low: number; high: number }
  | ({ method: 'reinhard' } & LabStats)
  | ({ method: 'macenko' } & StainFit);

// ---------------------------------------------------------------- percentile stretch

function fitPercentileBounds(image: RgbImage, low: number, high: number): { lo: number[]; hi: number[] } {
  const lo: number[] = [];
  const hi: number[] = [];
  const pixels = image.width * image.height;
  for (let c = 0; c < 3; c++) {
    const histogram = new Uint32Array(256);
    for (let i = 0; i < pixels; i++) {
      const v = image.data[i * 3 + c] ?? 0;
      histogram[v] = (histogram[v] ?? 0) + 1;
    }
    const at = (p: number): number => {
      const target = (p / 100) * pixels;
      let seen = 0;
      for (let v = 0; v < 256; v++) {
        seen += histogram[v] ?? 0;
        if (seen >= target) return v;
      }
      return 255;
    };
    lo.push(at(low));
    hi.push(at(high));
  }
  return { lo, hi };
}

function applyPercentile(image: RgbImage, low: number, high: number): RgbImage {
  const { lo, hi } = fitPercentileBounds(image, low, high);
  const out = new Uint8Array(image.data.length);
  const lut = [0, 1, 2].map((c) => {
    const table = new Uint8Array(256);
    const a = lo[c] ?? 0;
    const b = Math.max(a + 1, hi[c] ?? 255);
    for (let v = 0; v < 256; v++) table[v] = clampByte(((v - a) * 255) / (b - a));
    return table;
  });
  for (let i = 0; i < out.length; i++) out[i] = lut[i % 3]?.[image.data[i] ?? 0] ?? 0;
  return { data: out, width: image.width, height: image.height };
}

// ---------------------------------------------------------------- grey and haematoxylin channel

function applyGrey(image: RgbImage, low: number, high: number): RgbImage {
  const pixels = image.width * image.height;
  const luminance = new Float32Array(pixels);
  for (let i = 0; i < pixels; i++)
    luminance[i] =
      0.299 * (image.data[i * 3] ?? 0) +
      0.587 * (image.data[i * 3 + 1] ?? 0) +
      0.114 * (image.data[i * 3 + 2] ?? 0);
  const step = sampleStep(pixels);
  const sample = new Float32Array(Math.ceil(pixels / step));
  for (let i = 0, k = 0; i < pixels; i += step, k++) sample[k] = luminance[i] ?? 0;
  sample.sort();
  const lo = percentile(sample, low);
  const span = Math.max(percentile(sample, high) - lo, 1e-6);
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const v = clampByte((255 * ((luminance[i] ?? 0) - lo)) / span);
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return { data: out, width: image.width, height: image.height };
}

function applyHaematoxylin(image: RgbImage, high: number): RgbImage {
  const pixels = image.width * image.height;
  const h = new Float32Array(pixels);
  const m0 = HED_FROM_RGB[0]?.[0] ?? 0;
  const m1 = HED_FROM_RGB[1]?.[0] ?? 0;
  const m2 = HED_FROM_RGB[2]?.[0] ?? 0;
  for (let i = 0; i < pixels; i++) {
    const od0 = OD_256[image.data[i * 3] ?? 0] ?? 0;
    const od1 = OD_256[image.data[i * 3 + 1] ?? 0] ?? 0;
    const od2 = OD_256[image.data[i * 3 + 2] ?? 0] ?? 0;
    h[i] = Math.max(0, od0 * m0 + od1 * m1 + od2 * m2);
  }
  const step = sampleStep(pixels);
  const sample = new Float32Array(Math.ceil(pixels / step));
  for (let i = 0, k = 0; i < pixels; i += step, k++) sample[k] = h[i] ?? 0;
  sample.sort();
  const top = Math.max(percentile(sample, high), 1e-6);
  const out = new Uint8Array(pixels * 3);
  for (let i = 0; i < pixels; i++) {
    const v = clampByte(255 * (1 - Math.min(1, (h[i] ?? 0) / top)));
    out[i * 3] = v;
    out[i * 3 + 1] = v;
    out[i * 3 + 2] = v;
  }
  return { data: out, width: image.width, height: image.height };
}

const OD_256 = Float64Array.from({ length: 256 }, (_, v) => -Math.log((v + 1) / 256));

// ---------------------------------------------------------------- public surface

export interface NormaliserOptions {
  method: NormalisationMethod;
  /** Percentiles for 'percentile'; default [1, 99]. */
  percentiles?: [number, number];
}

/** Fits a normaliser; reinhard and macenko learn their target from the reference image. */
export function fitNormaliser(
  options: NormaliserOptions,
  reference?: RgbImage | readonly RgbImage[],
): Normaliser {
  // Several references: Reinhard's target becomes their average statistics (a dataset-level look).
  if (Array.isArray(reference)) {
    const images = reference as readonly RgbImage[];
    if (images.length === 0) throw new ConfigError('no reference images to fit the normalisation to');
    if (options.method !== 'reinhard') return fitNormaliser(options, images[0]);
    return { method: 'reinhard', ...averageLabStats(images) };
  }
  const single = reference as RgbImage | undefined;
  switch (options.method) {
    case 'none':
      return { method: 'none' };
    case 'percentile': {
      const [low, high] = options.percentiles ?? [1, 99];
      if (!(low >= 0 && high <= 100 && low < high))
        throw new ConfigError('percentiles must satisfy 0 <= low < high <= 100');
      return { method: 'percentile', low, high };
    }
    case 'haematoxylin':
      return { method: 'haematoxylin', high: options.percentiles?.[1] ?? 99 };
    case 'grey': {
      const [low, high] = options.percentiles ?? [1, 99];
      return { method: 'grey', low, high };
    }
    case 'reinhard': {
      if (!single) throw new ConfigError('reinhard normalisation needs a reference image (--reference)');
      return { method: 'reinhard', ...labStats(single) };
    }
    case 'macenko': {
      if (!single) return MACENKO_DEFAULT;
      const fit = fitStains(single);
      if (!fit)
        throw new ConfigError('the reference image has too little stained tissue to estimate its stains');
      return { method: 'macenko', ...fit };
    }
    default:
      throw new ConfigError(
        `unknown normalisation '${String(options.method)}' (${NORMALISATION_METHODS.join(', ')})`,
      );
  }
}

export function applyNormaliser(normaliser: Normaliser, image: RgbImage): RgbImage {
  switch (normaliser.method) {
    case 'none':
      return image;
    case 'percentile':
      return applyPercentile(image, normaliser.low, normaliser.high);
    case 'reinhard':
      return applyReinhard(image, normaliser);
    case 'macenko':
      return applyMacenko(image, normaliser);
    case 'haematoxylin':
      return applyHaematoxylin(image, normaliser.high);
    case 'grey':
      return applyGrey(image, normaliser.low, normaliser.high);
  }
}

/** Reinhard and Macenko statistics of an image, for tests and reports. */
export function describeStains(image: RgbImage): { lab: LabStats; stains?: StainFit } {
  const stains = fitStains(image);
  return stains ? { lab: labStats(image), stains } : { lab: labStats(image) };
}
