/**
 * Focus: how sharp the nuclei are. The variance of the Laplacian (Pech-Pacheco et al. 2000, the
 * measure Slideflow's and HistoQC's blur checks build on) of the haematoxylin channel (colour
 * deconvolution with Ruifrok's H&E vectors), measured at one reference scale (0.3 of the release,
 * about 1.07 um/px) whatever the image's own, so one threshold serves every resolution.
 */
import { resizeRgb, type RgbImage } from './image-io.js';
import { HED_FROM_RGB, OPTICAL_DENSITY } from './stain-vectors.js';

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
/**
 * For one slide tile (a patch of the model's grid): below it, a tile is left out of the slide's
 * answer. Of the 34,506 tissue tiles (32 px at 0.3x) of the development images the least sharp
 * measures 0.0071; copies blurred with sigma 2.5 at 0.3x reach 0.0012 at most, sigma 1.5 0.0101.
 */
export const MIN_TILE_FOCUS = 0.005;

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

/**
 * Measures of each cell of `grid` (col, row) in `region`, an image at `scale`, taken at the
 * reference scale: the region is resampled once, each cell's box cut from it and measured by
 * each of `measures` (one array of values per measure).
 */
export async function cellMeasures(
  region: RgbImage,
  grid: { patchSize: number; stride: number },
  cells: readonly (readonly [number, number])[],
  scale: number | null,
  measures: readonly ((tile: RgbImage) => number)[],
): Promise<Float32Array[]> {
  const factor = scale === null ? 1 : FOCUS_REFERENCE_SCALE / scale;
  const reference = await atReferenceScale(region, scale);
  const side = Math.max(3, Math.round(grid.patchSize * factor));
  const out = measures.map(() => new Float32Array(cells.length));
  const tile = new Uint8Array(side * side * 3);
  for (const [i, [col, row]] of cells.entries()) {
    const x0 = Math.min(reference.width - side, Math.round(col * grid.stride * factor));
    const y0 = Math.min(reference.height - side, Math.round(row * grid.stride * factor));
    for (let y = 0; y < side; y++) {
      const from = ((y0 + y) * reference.width + x0) * 3;
      tile.set(reference.data.subarray(from, from + side * 3), y * side * 3);
    }
    for (const [m, measure] of measures.entries()) {
      const values = out[m] as Float32Array;
      values[i] = measure({ data: tile, width: side, height: side });
    }
  }
  return out;
}

/** The image resampled to the reference scale; `scale` is the image's (unknown: taken as it is). */
export async function atReferenceScale(image: RgbImage, scale: number | null): Promise<RgbImage> {
  if (scale === null || Math.abs(scale - FOCUS_REFERENCE_SCALE) < 1e-3) return image;
  const factor = FOCUS_REFERENCE_SCALE / scale;
  return resizeRgb(
    image,
    Math.max(3, Math.round(image.width * factor)),
    Math.max(3, Math.round(image.height * factor)),
  );
}
