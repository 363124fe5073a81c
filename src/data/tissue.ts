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
}

/** Luminance above which an unsaturated pixel is empty glass. */
const GLASS_LUMINANCE = 215;
/** Chroma (max - min channel) below which a bright pixel counts as glass. */
const GLASS_CHROMA = 18;
/** How much darker green must be than red and blue for an H&E-like pixel. */
const GREEN_MARGIN = 1;

/** Least tissue share for an image to be read as a tissue field. */
export const MIN_TISSUE_FRACTION = 0.25;
/**
 * Least H&E-coloured share of the tissue. Measured: every one of the 322 development and
 * full-resolution images has at least 0.33 (the palest CLL fields); scikit-image's sample
 * photographs at most 0.22 (a colour wheel; the astronaut 0.18, the cat 0.01, IHC 0.01).
 */
export const MIN_STAIN_FRACTION = 0.27;

export function tissueStats(image: RgbImage): TissueStats {
  const { data, width, height } = image;
  const pixels = width * height;
  const step = Math.max(1, Math.floor(pixels / 250_000));
  let sampled = 0;
  let tissue = 0;
  let stained = 0;
  for (let p = 0; p < pixels; p += step) {
    const r = data[p * 3] ?? 0;
    const g = data[p * 3 + 1] ?? 0;
    const b = data[p * 3 + 2] ?? 0;
    sampled++;
    const luminance = 0.299 * r + 0.587 * g + 0.114 * b;
    const chroma = Math.max(r, g, b) - Math.min(r, g, b);
    if (luminance > GLASS_LUMINANCE && chroma < GLASS_CHROMA) continue;
    tissue++;
    if (g + GREEN_MARGIN <= r && g + GREEN_MARGIN <= b) stained++;
  }
  return {
    tissueFraction: sampled > 0 ? tissue / sampled : 0,
    stainFraction: tissue > 0 ? stained / tissue : 0,
  };
}
