/**
 * Per-image colour normalisation, fitted once and applied everywhere (prepare, predict, serve):
 * - percentile: per-channel stretch of the [low, high] percentiles to 0..255 (the KNIME
 *   workflow's normaliser); needs no reference.
 * - reinhard: matches mean and spread of each CIE L*a*b* channel to a reference image's
 *   (Reinhard et al. 2001).
 * - macenko: estimates the image's haematoxylin and eosin stain vectors in optical density and
 *   re-renders it with the reference's stains and concentration range (Macenko et al. 2009).
 * - haematoxylin: colour deconvolution (Ruifrok & Johnston) keeps the nuclear stain only, as a
 *   grey image stretched to its own 99th percentile: staining differences in eosin disappear.
 * Fitted parameters are plain JSON, stored with patch stores and model packages.
 */
import { ConfigError } from '../errors.js';
import type { RgbImage } from './image-io.js';
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
  | { method: 'reinhard'; mean: [number, number, number]; std: [number, number, number] }
  | {
      method: 'macenko';
      /** Reference stain vectors in optical density: [haematoxylin, eosin], each RGB. */
      stains: [[number, number, number], [number, number, number]];
      /** Reference 99th-percentile concentrations of haematoxylin and eosin. */
      maxConcentrations: [number, number];
    };

/** Standard H&E reference of Macenko's reference implementation, used when no reference image is given. */
export const MACENKO_DEFAULT: Extract<Normaliser, { method: 'macenko' }> = {
  method: 'macenko',
  stains: [
    [0.5626, 0.7201, 0.4062],
    [0.2159, 0.8012, 0.5581],
  ],
  maxConcentrations: [1.9705, 1.0308],
};

const IO = 240; // brightness of empty glass, as in Macenko's reference implementation
const BETA = 0.15; // optical density below which a pixel counts as background
const ALPHA = 1; // percentile of stain angles taken as the extremes
const MAX_SAMPLES = 200_000;

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Every k-th pixel, so that fitting costs the same for any image size. */
function sampleStep(pixels: number): number {
  return Math.max(1, Math.floor(pixels / MAX_SAMPLES));
}

function percentile(sorted: Float32Array | number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))));
  return sorted[i] ?? 0;
}

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

// ---------------------------------------------------------------- CIE L*a*b*

const SRGB_TO_LINEAR = Float64Array.from({ length: 256 }, (_, v) => {
  const c = v / 255;
  return c <= 0.04045 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
});
const WHITE = [0.95047, 1, 1.08883] as const;

function labF(t: number): number {
  return t > 216 / 24389 ? Math.cbrt(t) : ((24389 / 27) * t + 16) / 116;
}
function labFInv(t: number): number {
  return t ** 3 > 216 / 24389 ? t ** 3 : (116 * t - 16) / (24389 / 27);
}

export function rgbToLab(r: number, g: number, b: number, out: Float64Array, offset = 0): void {
  const lr = SRGB_TO_LINEAR[r] ?? 0;
  const lg = SRGB_TO_LINEAR[g] ?? 0;
  const lb = SRGB_TO_LINEAR[b] ?? 0;
  const x = (0.4124564 * lr + 0.3575761 * lg + 0.1804375 * lb) / WHITE[0];
  const y = (0.2126729 * lr + 0.7151522 * lg + 0.072175 * lb) / WHITE[1];
  const z = (0.0193339 * lr + 0.119192 * lg + 0.9503041 * lb) / WHITE[2];
  const fx = labF(x);
  const fy = labF(y);
  const fz = labF(z);
  out[offset] = 116 * fy - 16;
  out[offset + 1] = 500 * (fx - fy);
  out[offset + 2] = 200 * (fy - fz);
}

function linearToSrgbByte(c: number): number {
  const v = c <= 0.0031308 ? 12.92 * c : 1.055 * c ** (1 / 2.4) - 0.055;
  return clampByte(v * 255);
}

export function labToRgb(l: number, a: number, b: number): [number, number, number] {
  const fy = (l + 16) / 116;
  const x = labFInv(fy + a / 500) * WHITE[0];
  const y = labFInv(fy) * WHITE[1];
  const z = labFInv(fy - b / 200) * WHITE[2];
  return [
    linearToSrgbByte(3.2404542 * x - 1.5371385 * y - 0.4985314 * z),
    linearToSrgbByte(-0.969266 * x + 1.8760108 * y + 0.041556 * z),
    linearToSrgbByte(0.0556434 * x - 0.2040259 * y + 1.0572252 * z),
  ];
}

function labStats(image: RgbImage): { mean: [number, number, number]; std: [number, number, number] } {
  const pixels = image.width * image.height;
  const step = sampleStep(pixels);
  const lab = new Float64Array(3);
  const sum = [0, 0, 0];
  const sq = [0, 0, 0];
  let n = 0;
  for (let i = 0; i < pixels; i += step) {
    rgbToLab(image.data[i * 3] ?? 0, image.data[i * 3 + 1] ?? 0, image.data[i * 3 + 2] ?? 0, lab);
    for (let c = 0; c < 3; c++) {
      const v = lab[c] ?? 0;
      sum[c] = (sum[c] ?? 0) + v;
      sq[c] = (sq[c] ?? 0) + v * v;
    }
    n++;
  }
  const mean = sum.map((s) => s / n) as [number, number, number];
  const std = sq.map((s, c) => Math.sqrt(Math.max(s / n - (mean[c] ?? 0) ** 2, 1e-6))) as [
    number,
    number,
    number,
  ];
  return { mean, std };
}

function applyReinhard(image: RgbImage, target: { mean: number[]; std: number[] }): RgbImage {
  const source = labStats(image);
  const out = new Uint8Array(image.data.length);
  const lab = new Float64Array(3);
  const gain = [0, 1, 2].map((c) => (target.std[c] ?? 1) / (source.std[c] ?? 1));
  for (let i = 0; i < out.length; i += 3) {
    rgbToLab(image.data[i] ?? 0, image.data[i + 1] ?? 0, image.data[i + 2] ?? 0, lab);
    const mapped = [0, 1, 2].map(
      (c) => ((lab[c] ?? 0) - (source.mean[c] ?? 0)) * (gain[c] ?? 1) + (target.mean[c] ?? 0),
    );
    const [r, g, b] = labToRgb(mapped[0] ?? 0, mapped[1] ?? 0, mapped[2] ?? 0);
    out[i] = r;
    out[i + 1] = g;
    out[i + 2] = b;
  }
  return { data: out, width: image.width, height: image.height };
}

// ---------------------------------------------------------------- Macenko

/** Optical density of each byte value: -ln((v + 1) / Io), Io being the glass brightness. */
const OD = Float64Array.from({ length: 256 }, (_, v) => Math.max(0, -Math.log((v + 1) / IO)));

/** Eigen-decomposition of a symmetric 3x3 matrix (Jacobi); columns of `vectors`, values descending. */
export function symmetricEigen3(m: number[][]): { values: number[]; vectors: number[][] } {
  const a = m.map((row) => [...row]);
  const v = [
    [1, 0, 0],
    [0, 1, 0],
    [0, 0, 1],
  ];
  const at = (r: number[][], i: number, j: number): number => r[i]?.[j] ?? 0;
  const set = (r: number[][], i: number, j: number, value: number): void => {
    const row = r[i];
    if (row) row[j] = value;
  };
  for (let sweep = 0; sweep < 50; sweep++) {
    const off = at(a, 0, 1) ** 2 + at(a, 0, 2) ** 2 + at(a, 1, 2) ** 2;
    if (off < 1e-20) break;
    for (const [p, q] of [
      [0, 1],
      [0, 2],
      [1, 2],
    ] as const) {
      const apq = at(a, p, q);
      if (Math.abs(apq) < 1e-30) continue;
      const theta = (at(a, q, q) - at(a, p, p)) / (2 * apq);
      const t = Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
      const c = 1 / Math.sqrt(t * t + 1);
      const s = t * c;
      for (let k = 0; k < 3; k++) {
        const akp = at(a, k, p);
        const akq = at(a, k, q);
        set(a, k, p, c * akp - s * akq);
        set(a, k, q, s * akp + c * akq);
      }
      for (let k = 0; k < 3; k++) {
        const apk = at(a, p, k);
        const aqk = at(a, q, k);
        set(a, p, k, c * apk - s * aqk);
        set(a, q, k, s * apk + c * aqk);
      }
      for (let k = 0; k < 3; k++) {
        const vkp = at(v, k, p);
        const vkq = at(v, k, q);
        set(v, k, p, c * vkp - s * vkq);
        set(v, k, q, s * vkp + c * vkq);
      }
    }
  }
  const order = [0, 1, 2].sort((i, j) => at(a, j, j) - at(a, i, i));
  return {
    values: order.map((i) => at(a, i, i)),
    vectors: [0, 1, 2].map((k) => order.map((i) => at(v, k, i))),
  };
}

interface StainFit {
  stains: [[number, number, number], [number, number, number]];
  maxConcentrations: [number, number];
}

function unit(v: number[]): [number, number, number] {
  const n = Math.hypot(v[0] ?? 0, v[1] ?? 0, v[2] ?? 0) || 1;
  return [(v[0] ?? 0) / n, (v[1] ?? 0) / n, (v[2] ?? 0) / n];
}

/** 2x3 least-squares solver for concentrations: C = (S^T S)^-1 S^T od, S's columns the stains. */
function concentrationSolver(stains: StainFit['stains']): (od: number[]) => [number, number] {
  const [h, e] = stains;
  const hh = h[0] * h[0] + h[1] * h[1] + h[2] * h[2];
  const ee = e[0] * e[0] + e[1] * e[1] + e[2] * e[2];
  const he = h[0] * e[0] + h[1] * e[1] + h[2] * e[2];
  const det = hh * ee - he * he || 1e-12;
  return (od) => {
    const ho = h[0] * (od[0] ?? 0) + h[1] * (od[1] ?? 0) + h[2] * (od[2] ?? 0);
    const eo = e[0] * (od[0] ?? 0) + e[1] * (od[1] ?? 0) + e[2] * (od[2] ?? 0);
    return [(ee * ho - he * eo) / det, (hh * eo - he * ho) / det];
  };
}

function fitStains(image: RgbImage): StainFit | undefined {
  const pixels = image.width * image.height;
  const step = sampleStep(pixels);
  const tissue: number[][] = [];
  for (let i = 0; i < pixels; i += step) {
    const od = [
      OD[image.data[i * 3] ?? 0] ?? 0,
      OD[image.data[i * 3 + 1] ?? 0] ?? 0,
      OD[image.data[i * 3 + 2] ?? 0] ?? 0,
    ];
    if (od.every((v) => v > BETA)) tissue.push(od);
  }
  if (tissue.length < 100) return undefined;
  const mean = [0, 1, 2].map((c) => tissue.reduce((s, od) => s + (od[c] ?? 0), 0) / tissue.length);
  const cov = [0, 1, 2].map((i) =>
    [0, 1, 2].map(
      (j) =>
        tissue.reduce((s, od) => s + ((od[i] ?? 0) - (mean[i] ?? 0)) * ((od[j] ?? 0) - (mean[j] ?? 0)), 0) /
        tissue.length,
    ),
  );
  const { vectors } = symmetricEigen3(cov);
  const v1 = vectors.map((row) => row[0] ?? 0);
  const v2 = vectors.map((row) => row[1] ?? 0);
  // Orient the plane so that stains (positive densities) project to positive coordinates.
  if ((v1[0] ?? 0) + (v1[1] ?? 0) + (v1[2] ?? 0) < 0) v1.forEach((x, i) => (v1[i] = -x));
  if ((v2[0] ?? 0) + (v2[1] ?? 0) + (v2[2] ?? 0) < 0) v2.forEach((x, i) => (v2[i] = -x));
  const angles = Float32Array.from(tissue, (od) => {
    const a = (od[0] ?? 0) * (v1[0] ?? 0) + (od[1] ?? 0) * (v1[1] ?? 0) + (od[2] ?? 0) * (v1[2] ?? 0);
    const b = (od[0] ?? 0) * (v2[0] ?? 0) + (od[1] ?? 0) * (v2[1] ?? 0) + (od[2] ?? 0) * (v2[2] ?? 0);
    return Math.atan2(b, a);
  }).sort();
  const minPhi = percentile(angles, ALPHA);
  const maxPhi = percentile(angles, 100 - ALPHA);
  const along = (phi: number): [number, number, number] =>
    unit([0, 1, 2].map((c) => (v1[c] ?? 0) * Math.cos(phi) + (v2[c] ?? 0) * Math.sin(phi)));
  const a = along(minPhi);
  const b = along(maxPhi);
  // Haematoxylin absorbs more red than eosin does.
  const stains: StainFit['stains'] = a[0] > b[0] ? [a, b] : [b, a];
  const solve = concentrationSolver(stains);
  const hc = new Float32Array(tissue.length);
  const ec = new Float32Array(tissue.length);
  tissue.forEach((od, i) => {
    const [h, e] = solve(od);
    hc[i] = h;
    ec[i] = e;
  });
  hc.sort();
  ec.sort();
  return {
    stains,
    maxConcentrations: [Math.max(percentile(hc, 99), 1e-6), Math.max(percentile(ec, 99), 1e-6)],
  };
}

function applyMacenko(image: RgbImage, reference: StainFit): RgbImage {
  const fit = fitStains(image);
  // An image with almost no tissue has no stains to estimate: leave it as it is.
  if (!fit) return { data: Uint8Array.from(image.data), width: image.width, height: image.height };
  const solve = concentrationSolver(fit.stains);
  const scale = [
    reference.maxConcentrations[0] / fit.maxConcentrations[0],
    reference.maxConcentrations[1] / fit.maxConcentrations[1],
  ];
  const [h, e] = reference.stains;
  const out = new Uint8Array(image.data.length);
  const cache = new Map<number, number>();
  for (let i = 0; i < out.length; i += 3) {
    const r = image.data[i] ?? 0;
    const g = image.data[i + 1] ?? 0;
    const b = image.data[i + 2] ?? 0;
    const key = (r << 16) | (g << 8) | b;
    let packed = cache.get(key);
    if (packed === undefined) {
      const [ch, ce] = solve([OD[r] ?? 0, OD[g] ?? 0, OD[b] ?? 0]);
      const hs = ch * (scale[0] ?? 1);
      const es = ce * (scale[1] ?? 1);
      const rgb = [0, 1, 2].map((c) => clampByte(IO * Math.exp(-((h[c] ?? 0) * hs + (e[c] ?? 0) * es))));
      packed = ((rgb[0] ?? 0) << 16) | ((rgb[1] ?? 0) << 8) | (rgb[2] ?? 0);
      if (cache.size < 1 << 20) cache.set(key, packed);
    }
    out[i] = (packed >> 16) & 255;
    out[i + 1] = (packed >> 8) & 255;
    out[i + 2] = packed & 255;
  }
  return { data: out, width: image.width, height: image.height };
}

// ---------------------------------------------------------------- haematoxylin channel

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
    const stats = images.map(labStats);
    const mean = [0, 1, 2].map((c) => stats.reduce((s, x) => s + (x.mean[c] ?? 0), 0) / stats.length) as [
      number,
      number,
      number,
    ];
    const std = [0, 1, 2].map((c) => stats.reduce((s, x) => s + (x.std[c] ?? 0), 0) / stats.length) as [
      number,
      number,
      number,
    ];
    return { method: 'reinhard', mean, std };
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
export function describeStains(image: RgbImage): { lab: ReturnType<typeof labStats>; stains?: StainFit } {
  const stains = fitStains(image);
  return stains ? { lab: labStats(image), stains } : { lab: labStats(image) };
}
