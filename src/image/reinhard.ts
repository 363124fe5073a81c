/**
 * Reinhard normalisation (Reinhard et al. 2001): the mean and spread of each CIE L*a*b* channel
 * matched to a reference's.
 */
import type { RgbImage } from './image-io.js';
import { clampByte, sampleStep } from './sampling.js';

/** Mean and standard deviation of each L*a*b* channel: a reference's, the target of Reinhard's method. */
export interface LabStats {
  mean: [number, number, number];
  std: [number, number, number];
}

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

export function labStats(image: RgbImage): LabStats {
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

export function applyReinhard(image: RgbImage, target: LabStats): RgbImage {
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

/** The average statistics of several references: a dataset-level look. */
export function averageLabStats(images: readonly RgbImage[]): LabStats {
  const stats = images.map(labStats);
  const average = (of: (s: LabStats) => readonly number[]): [number, number, number] =>
    [0, 1, 2].map((c) => stats.reduce((s, x) => s + (of(x)[c] ?? 0), 0) / stats.length) as [
      number,
      number,
      number,
    ];
  return { mean: average((s) => s.mean), std: average((s) => s.std) };
}
