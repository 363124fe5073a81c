/**
 * Focus: how sharp the nuclei are. The variance of the Laplacian (Pech-Pacheco et al. 2000, the
 * measure Slideflow's and HistoQC's blur checks build on) of the haematoxylin channel (colour
 * deconvolution with Ruifrok's H&E vectors), measured at the judging scale (judged-pixels.ts)
 * whatever the image's own, so one limit (input-checks.ts) serves every resolution.
 */
import type { RgbImage } from './image-io.js';
import { HED_FROM_RGB, OPTICAL_DENSITY } from './stain-vectors.js';

/** Haematoxylin optical density of each pixel. */
function haematoxylin(image: RgbImage): Float32Array {
  const { data, width, height } = image;
  const out = new Float32Array(width * height);
  const [h0, h1, h2] = [HED_FROM_RGB[0]?.[0] ?? 0, HED_FROM_RGB[1]?.[0] ?? 0, HED_FROM_RGB[2]?.[0] ?? 0];
  const od = (v: number | undefined): number => OPTICAL_DENSITY[v ?? 0] ?? 0;
  for (let i = 0; i < width * height; i++)
    out[i] = od(data[i * 3]) * h0 + od(data[i * 3 + 1]) * h1 + od(data[i * 3 + 2]) * h2;
  return out;
}

/** Variance of the 4-neighbour Laplacian of the haematoxylin channel (higher: sharper). */
export function focusMeasure(image: RgbImage): number {
  const { width, height } = image;
  if (width < 3 || height < 3) return 0;
  const h = haematoxylin(image);
  let sum = 0;
  let squares = 0;
  let n = 0;
  for (let y = 1; y < height - 1; y++) {
    for (let x = 1; x < width - 1; x++) {
      const i = y * width + x;
      const lap =
        (h[i - 1] ?? 0) + (h[i + 1] ?? 0) + (h[i - width] ?? 0) + (h[i + width] ?? 0) - 4 * (h[i] ?? 0);
      sum += lap;
      squares += lap * lap;
      n++;
    }
  }
  const mean = sum / n;
  return squares / n - mean * mean;
}
