/**
 * Is this an H&E tissue image at all? Two cheap statistics of the decoded image decide whether
 * a model made for H&E fields may answer: how much of it is tissue rather than empty glass, and
 * how much of that tissue has H&E's colour. Both haematoxylin (blue-purple) and eosin (pink)
 * absorb green most, so in a stained pixel green is the darkest channel; in photographs,
 * pen marks (blue, green, black ink) and blank fields it mostly is not.
 */
import type { RgbImage } from './image-io.js';

export interface TissueStats {
  /** Share of pixels that are not empty glass (dark enough or coloured enough). */
  tissueFraction: number;
  /** Share of the tissue pixels whose colour is H&E-like (green the darkest channel). */
  stainFraction: number;
  /** Share of the image that is coloured pen ink (blue, green): strongly coloured without H&E's colour. */
  inkFraction: number;
}

/** Luminance above which an unsaturated pixel is empty glass. */
export const GLASS_LUMINANCE = 215;
/** Chroma (max - min channel) below which a bright pixel counts as glass. */
export const GLASS_CHROMA = 18;
/** How much darker green must be than red and blue for an H&E-like pixel. */
export const GREEN_MARGIN = 1;
/** About this many pixels are sampled (every k-th, k = max(1, floor(pixels / this))). */
export const TISSUE_SAMPLES = 250_000;

/** Luminance and chroma (max - min channel) of pixel `p` of RGB data. */
export function luminanceChroma(data: Uint8Array, p: number): [number, number] {
  const r = data[p * 3] ?? 0;
  const g = data[p * 3 + 1] ?? 0;
  const b = data[p * 3 + 2] ?? 0;
  return [0.299 * r + 0.587 * g + 0.114 * b, Math.max(r, g, b) - Math.min(r, g, b)];
}

/** Empty glass: bright and colourless (the field guard's rule; the slide mask thresholds by Otsu). */
export const isGlass = (luminance: number, chroma: number): boolean =>
  luminance > GLASS_LUMINANCE && chroma < GLASS_CHROMA;

export function tissueStats(image: RgbImage): TissueStats {
  const { data, width, height } = image;
  const pixels = width * height;
  const step = Math.max(1, Math.floor(pixels / TISSUE_SAMPLES));
  let sampled = 0;
  let tissue = 0;
  let stained = 0;
  let ink = 0;
  for (let p = 0; p < pixels; p += step) {
    const r = data[p * 3] ?? 0;
    const g = data[p * 3 + 1] ?? 0;
    const b = data[p * 3 + 2] ?? 0;
    sampled++;
    const luminance = 0.299 * r + 0.587 * g + 0.114 * b;
    const chroma = Math.max(r, g, b) - Math.min(r, g, b);
    if (isGlass(luminance, chroma)) continue;
    tissue++;
    const isStained = g + GREEN_MARGIN <= r && g + GREEN_MARGIN <= b;
    if (isStained) stained++;
    // Coloured ink only: near-black pixels are as often dense nuclei in a field as ink.
    if (chroma >= PEN_CHROMA && !isStained) ink++;
  }
  return {
    tissueFraction: sampled > 0 ? tissue / sampled : 0,
    stainFraction: tissue > 0 ? stained / tissue : 0,
    inkFraction: sampled > 0 ? ink / sampled : 0,
  };
}

/**
 * A tissue mask of a low-resolution view of a slide: 1 where a pixel is stained tissue. The
 * chroma threshold is Otsu's over the view (TIAToolbox and Slideflow threshold the same way),
 * kept between the glass rule's and twice it. Pen ink is strongly coloured without H&E's colour
 * (blue, green) or near black.
 */
export function tissueMask(image: RgbImage): Uint8Array {
  const { data, width, height } = image;
  const pixels = width * height;
  const chroma = new Uint8Array(pixels);
  const histogram = new Float64Array(256);
  for (let p = 0; p < pixels; p++) {
    const r = data[p * 3] ?? 0;
    const g = data[p * 3 + 1] ?? 0;
    const b = data[p * 3 + 2] ?? 0;
    const c = Math.max(r, g, b) - Math.min(r, g, b);
    chroma[p] = c;
    histogram[c] = (histogram[c] ?? 0) + 1;
  }
  // Between the glass rule's chroma and twice it: Otsu separates glass from tissue on a slide
  // that is mostly glass, but would split pale eosin from nuclei on one that is mostly tissue.
  const threshold = Math.min(2 * GLASS_CHROMA, Math.max(GLASS_CHROMA, otsu(histogram, pixels)));
  const mask = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) {
    const r = data[p * 3] ?? 0;
    const g = data[p * 3 + 1] ?? 0;
    const b = data[p * 3 + 2] ?? 0;
    const c = chroma[p] ?? 0;
    const luminance = 0.299 * r + 0.587 * g + 0.114 * b;
    const glass = luminance > GLASS_LUMINANCE && c < threshold;
    const stained = g + GREEN_MARGIN <= r && g + GREEN_MARGIN <= b;
    mask[p] = glass || isInk(c, luminance, stained) ? 0 : 1;
  }
  return mask;
}

/** Chroma above which a pixel that is not H&E-coloured is ink; luminance below which it is black ink. */
export const PEN_CHROMA = 40;
const PEN_LUMINANCE = 40;

/** Ink: strongly coloured but not H&E's colour (green not the darkest channel), or near black. */
function isInk(chroma: number, luminance: number, stained: boolean): boolean {
  return (chroma >= PEN_CHROMA && !stained) || luminance < PEN_LUMINANCE;
}

/** Otsu's threshold of a 256-bin histogram: the split with the largest between-class variance. */
function otsu(histogram: Float64Array, total: number): number {
  let sum = 0;
  for (let v = 0; v < 256; v++) sum += v * (histogram[v] ?? 0);
  let below = 0;
  let sumBelow = 0;
  let best = 0;
  let threshold = 0;
  for (let v = 0; v < 256; v++) {
    below += histogram[v] ?? 0;
    if (below === 0) continue;
    const above = total - below;
    if (above === 0) break;
    sumBelow += v * (histogram[v] ?? 0);
    const meanBelow = sumBelow / below;
    const meanAbove = (sum - sumBelow) / above;
    const variance = below * above * (meanBelow - meanAbove) ** 2;
    if (variance > best) {
      best = variance;
      threshold = v + 1;
    }
  }
  return threshold;
}
