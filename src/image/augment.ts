/**
 * Stain and colour augmentation of uint8 RGB patches, for training to see the staining
 * variation between cases and sites (Tellez et al. 2018: HED jitter). Seeded, in place on a
 * batch buffer; identity when every strength is 0.
 */
import { ConfigError } from '../errors.js';
import { HED_FROM_RGB, RGB_FROM_HED } from './stain-vectors.js';

export interface StainAugmentOptions {
  /** HED jitter: each stain's density scaled by 1 + U(-s, s) ... */
  hedScale?: number;
  /** ... and shifted by U(-s, s). */
  hedShift?: number;
  /** Brightness factor 1 + U(-s, s). */
  brightness?: number;
  /** Contrast factor 1 + U(-s, s) around the patch mean. */
  contrast?: number;
  /** Saturation factor 1 + U(-s, s). */
  saturation?: number;
  /** Hue rotation by U(-s, s) of a full turn. */
  hue?: number;
}

const OD = Float64Array.from({ length: 256 }, (_, v) => -Math.log((v + 1) / 256));

function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

const STRENGTHS = ['hedScale', 'hedShift', 'brightness', 'contrast', 'saturation', 'hue'] as const;

export function validateStainAugment(options: StainAugmentOptions): void {
  for (const key of STRENGTHS) {
    const v = options[key];
    if (v !== undefined && !(Number.isFinite(v) && v >= 0 && v <= 1)) {
      throw new ConfigError(`stain augmentation '${key}' must be between 0 and 1 (got ${v})`);
    }
  }
}

/**
 * Augments `count` patches of `pixelsPerPatch` RGB pixels stored back to back in `batch`,
 * each with its own random draw from `random`.
 */
export function augmentStain(
  batch: Uint8Array,
  count: number,
  pixelsPerPatch: number,
  options: StainAugmentOptions,
  random: () => number,
): void {
  validateStainAugment(options);
  if (batch.length !== count * pixelsPerPatch * 3)
    throw new ConfigError('the batch length does not match count x pixels x 3');
  const u = (s = 0): number => (random() * 2 - 1) * s;
  const hed = (options.hedScale ?? 0) > 0 || (options.hedShift ?? 0) > 0;
  const colour = STRENGTHS.slice(2).some((k) => (options[k] ?? 0) > 0);
  for (let n = 0; n < count; n++) {
    const start = n * pixelsPerPatch * 3;
    const end = start + pixelsPerPatch * 3;
    if (hed) {
      const alpha = [1 + u(options.hedScale), 1 + u(options.hedScale), 1 + u(options.hedScale)];
      const beta = [u(options.hedShift), u(options.hedShift), u(options.hedShift)];
      // Combined linear map in optical density: od' = ((od * H) * alpha + beta) * R
      const m = [0, 1, 2].map((i) =>
        [0, 1, 2].map((j) =>
          [0, 1, 2].reduce(
            (s, k) => s + (HED_FROM_RGB[i]?.[k] ?? 0) * (alpha[k] ?? 1) * (RGB_FROM_HED[k]?.[j] ?? 0),
            0,
          ),
        ),
      );
      const offset = [0, 1, 2].map((j) =>
        [0, 1, 2].reduce((s, k) => s + (beta[k] ?? 0) * (RGB_FROM_HED[k]?.[j] ?? 0), 0),
      );
      for (let i = start; i < end; i += 3) {
        const od = [OD[batch[i] ?? 0] ?? 0, OD[batch[i + 1] ?? 0] ?? 0, OD[batch[i + 2] ?? 0] ?? 0];
        for (let j = 0; j < 3; j++) {
          const d =
            (od[0] ?? 0) * (m[0]?.[j] ?? 0) +
            (od[1] ?? 0) * (m[1]?.[j] ?? 0) +
            (od[2] ?? 0) * (m[2]?.[j] ?? 0) +
            (offset[j] ?? 0);
          batch[i + j] = clampByte(256 * Math.exp(-d) - 1);
        }
      }
    }
    if (colour) {
      const brightness = 1 + u(options.brightness);
      const contrast = 1 + u(options.contrast);
      const saturation = 1 + u(options.saturation);
      const angle = u(options.hue) * 2 * Math.PI;
      let mean = 0;
      for (let i = start; i < end; i += 3)
        mean += 0.299 * (batch[i] ?? 0) + 0.587 * (batch[i + 1] ?? 0) + 0.114 * (batch[i + 2] ?? 0);
      mean = (mean / pixelsPerPatch) * brightness;
      const cos = Math.cos(angle);
      const sin = Math.sin(angle);
      for (let i = start; i < end; i += 3) {
        const r = (batch[i] ?? 0) * brightness;
        const g = (batch[i + 1] ?? 0) * brightness;
        const b = (batch[i + 2] ?? 0) * brightness;
        // YIQ: luma, then chroma rotated (hue) and scaled (saturation).
        let y = 0.299 * r + 0.587 * g + 0.114 * b;
        const ii = 0.596 * r - 0.274 * g - 0.322 * b;
        const q = 0.211 * r - 0.523 * g + 0.312 * b;
        const i2 = (ii * cos - q * sin) * saturation;
        const q2 = (ii * sin + q * cos) * saturation;
        y = (y - mean) * contrast + mean;
        batch[i] = clampByte(y + 0.956 * i2 + 0.621 * q2);
        batch[i + 1] = clampByte(y - 0.272 * i2 - 0.647 * q2);
        batch[i + 2] = clampByte(y - 1.106 * i2 + 1.703 * q2);
      }
    }
  }
}
