/**
 * Focus: how sharp the nuclei are. The variance of the Laplacian (Pech-Pacheco et al. 2000, the
 * measure Slideflow's and HistoQC's blur checks build on) of the haematoxylin channel (colour
 * deconvolution with Ruifrok's H&E vectors), measured at one reference scale (0.3 of the release,
 * about 1.07 um/px) whatever the image's own, so one threshold serves every resolution.
 */
import { resizeRgb, type RgbImage } from './image-io.js';
import { HED_FROM_RGB } from './stain-vectors.js';

/** The scale (relative to the release) the measure is taken at, and below which an image is out of focus. */
export const FOCUS_REFERENCE_SCALE = 0.3;
/**
 * Chosen on the development images: the sharpest blurred copy measured (a full-resolution field
 * blurred with sigma 8, 0.0017; sigma 4 reaches 0.021) against the least sharp real image (the
 * 295 at 0.3x: 0.026; the full- and half-resolution samples: 0.042 and 0.045). README: the margins.
 */
export const MIN_FOCUS = 0.01;
/** The least sharp development image (of the 295 at 0.3x), for messages that say how far off an image is. */
export const DEVELOPMENT_MIN_FOCUS = 0.0258;

/** Haematoxylin optical density of each pixel. */
function haematoxylin(image: RgbImage): Float32Array {
  const { data, width, height } = image;
  const out = new Float32Array(width * height);
  const [h0, h1, h2] = [HED_FROM_RGB[0]?.[0] ?? 0, HED_FROM_RGB[1]?.[0] ?? 0, HED_FROM_RGB[2]?.[0] ?? 0];
  for (let i = 0; i < width * height; i++) {
    const od = (v: number): number => -Math.log10(Math.max(v, 1) / 255);
    out[i] = od(data[i * 3] ?? 0) * h0 + od(data[i * 3 + 1] ?? 0) * h1 + od(data[i * 3 + 2] ?? 0) * h2;
  }
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

/** The focus measure at the reference scale; `scale` is the image's (unknown: taken as it is). */
export async function focusAtReference(image: RgbImage, scale: number | null): Promise<number> {
  if (scale === null || Math.abs(scale - FOCUS_REFERENCE_SCALE) < 1e-3) return focusMeasure(image);
  const factor = FOCUS_REFERENCE_SCALE / scale;
  const reference = await resizeRgb(
    image,
    Math.max(3, Math.round(image.width * factor)),
    Math.max(3, Math.round(image.height * factor)),
  );
  return focusMeasure(reference);
}
