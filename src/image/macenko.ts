/**
 * Macenko normalisation (Macenko et al. 2009): the image's haematoxylin and eosin stain vectors
 * estimated in optical density, and the image re-rendered with the reference's stains and
 * concentration range.
 */
import type { RgbImage } from './image-io.js';
import { clampByte, percentile, sampleStep } from './sampling.js';

const IO = 240; // brightness of empty glass, as in Macenko's reference implementation
const BETA = 0.15; // optical density below which a pixel counts as background
const ALPHA = 1; // percentile of stain angles taken as the extremes

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

export interface StainFit {
  /** Stain vectors in optical density: [haematoxylin, eosin], each RGB. */
  stains: [[number, number, number], [number, number, number]];
  /** 99th-percentile concentrations of haematoxylin and eosin. */
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

export function fitStains(image: RgbImage): StainFit | undefined {
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

export function applyMacenko(image: RgbImage, reference: StainFit): RgbImage {
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

/** Standard H&E reference of Macenko's reference implementation, used when no reference image is given. */
export const MACENKO_DEFAULT: { method: 'macenko' } & StainFit = {
  method: 'macenko',
  stains: [
    [0.5626, 0.7201, 0.4062],
    [0.2159, 0.8012, 0.5581],
  ],
  maxConcentrations: [1.9705, 1.0308],
};
