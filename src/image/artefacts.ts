/**
 * Preparation artefacts a field image can carry besides blur and coloured ink: tissue folds, air
 * bubbles under the coverslip, and black pen ink. HistoQC checks the same three, each
 * with its own cue; these are cues of the same kind, measured at the judging scale
 * (judged-pixels.ts) so one limit (input-checks.ts) serves every resolution.
 * - A fold is tissue lying on itself: twice the thickness, so about twice the optical density
 *   of the tissue around it (Beer-Lambert), over a band of the field.
 * - A bubble's rim is a thin, dark, colourless ring (light refracted away at the air's edge)
 *   around an interior without that darkness.
 * - Black ink is a large connected patch of near-black, colourless pixels; dense nuclei are as
 *   dark but stained (coloured) and broken up by pale cytoplasm.
 */
import type { RgbImage } from './image-io.js';
import { OPTICAL_DENSITY } from './stain-vectors.js';
import { isGlass, luminanceChroma } from './tissue.js';

export interface ArtefactStats {
  /** Share of the tissue blocks about twice as dense as the field's median block: a fold. */
  foldFraction: number;
  /** Share of the field inside the largest bubble rim found (0: none). */
  bubbleFraction: number;
  /** Share of the field covered by the largest connected patch of black ink. */
  blackInkFraction: number;
}

/** Side of the blocks whose optical density is compared (pixels at the judging scale). */
export const FOLD_BLOCK = 16;
/** A block this many times the median block's optical density is a double layer of tissue. */
export const FOLD_DENSITY_RATIO = 1.6;

/** A bubble rim's pixels: dark and colourless. */
export const RIM_LUMINANCE = 70;
export const RIM_CHROMA = 25;
/** Black ink's pixels: darker still, as colourless. */
export const INK_LUMINANCE = 50;
export const INK_CHROMA = 25;
/** A rim is at least this wide (judging-scale pixels), about round, a thin ring, its centre clear. */
export const MIN_RIM_SIDE = 20;
export const MAX_RIM_ASPECT = 1.67;
export const MAX_RIM_FILL = 0.4;
export const MAX_RIM_CENTRE_SHARE = 0.05;

export function artefactStats(image: RgbImage): ArtefactStats {
  const dark = (maxLuminance: number, maxChroma: number): Uint8Array =>
    pixelMask(image, (luminance, chroma) => luminance < maxLuminance && chroma < maxChroma);
  const rim = dark(RIM_LUMINANCE, RIM_CHROMA);
  const pixels = image.width * image.height;
  let bubble = 0;
  for (const part of components(rim, image.width, image.height))
    if (isRing(part, rim, image.width)) bubble = Math.max(bubble, (part.w * part.h) / pixels);
  let ink = 0;
  for (const part of components(dark(INK_LUMINANCE, INK_CHROMA), image.width, image.height))
    ink = Math.max(ink, part.count / pixels);
  return { foldFraction: foldFraction(image), bubbleFraction: bubble, blackInkFraction: ink };
}

function pixelMask(image: RgbImage, test: (luminance: number, chroma: number) => boolean): Uint8Array {
  const mask = new Uint8Array(image.width * image.height);
  for (let p = 0; p < mask.length; p++) mask[p] = test(...luminanceChroma(image.data, p)) ? 1 : 0;
  return mask;
}

const od = (v: number | undefined): number => OPTICAL_DENSITY[v ?? 0] ?? 0;

/** Mean optical density (summed over R, G, B) of a box's tissue pixels, and how many there are. */
function boxDensity(image: RgbImage, x0: number, y0: number, w: number, h: number): [number, number] {
  const { data, width } = image;
  let sum = 0;
  let tissue = 0;
  // Per pixel, once per tile of a whole slide: its channels read once, no tuple allocated.
  for (let y = y0; y < y0 + h; y++) {
    for (let x = x0; x < x0 + w; x++) {
      const p = (y * width + x) * 3;
      const r = data[p] ?? 0;
      const g = data[p + 1] ?? 0;
      const b = data[p + 2] ?? 0;
      const luminance = 0.299 * r + 0.587 * g + 0.114 * b;
      if (isGlass(luminance, Math.max(r, g, b) - Math.min(r, g, b))) continue;
      sum += od(r) + od(g) + od(b);
      tissue++;
    }
  }
  return [tissue > 0 ? sum / tissue : 0, tissue];
}

/** Mean optical density of an image's tissue pixels (a slide tile's, to compare with the others'). */
export function tissueDensity(image: RgbImage): number {
  return boxDensity(image, 0, 0, image.width, image.height)[0];
}

const median = (values: ArrayLike<number>): number =>
  Array.from(values).sort((a, b) => a - b)[Math.floor(values.length / 2)] ?? 0;

/** Each density as a multiple of the median of them all (a slide's tiles, a field's blocks). */
export function densityRatios(densities: ArrayLike<number>): Float32Array {
  const middle = median(densities);
  return Float32Array.from(densities, (d) => (middle > 0 ? d / middle : 0));
}

export const isFolded = (densityRatio: number): boolean => densityRatio > FOLD_DENSITY_RATIO;

/** Share of the mostly-tissue blocks whose mean optical density is FOLD_DENSITY_RATIO x the median's. */
function foldFraction(image: RgbImage): number {
  const densities: number[] = [];
  for (let y = 0; y + FOLD_BLOCK <= image.height; y += FOLD_BLOCK) {
    for (let x = 0; x + FOLD_BLOCK <= image.width; x += FOLD_BLOCK) {
      const [density, tissue] = boxDensity(image, x, y, FOLD_BLOCK, FOLD_BLOCK);
      if (tissue > (FOLD_BLOCK * FOLD_BLOCK) / 2) densities.push(density);
    }
  }
  if (densities.length === 0) return 0;
  return Array.from(densityRatios(densities)).filter(isFolded).length / densities.length;
}

interface Component {
  count: number;
  x0: number;
  y0: number;
  w: number;
  h: number;
}

/** The 4-connected components of a mask, with their pixel counts and bounding boxes. */
function components(mask: Uint8Array, width: number, height: number): Component[] {
  const seen = new Uint8Array(mask.length);
  const out: Component[] = [];
  const stack: number[] = [];
  for (let start = 0; start < mask.length; start++) {
    if (mask[start] !== 1 || seen[start] === 1) continue;
    seen[start] = 1;
    stack.push(start);
    let count = 0;
    let [x0, x1, y0, y1] = [width, -1, height, -1];
    while (stack.length > 0) {
      const p = stack.pop() ?? 0;
      const x = p % width;
      const y = (p - x) / width;
      count++;
      [x0, x1, y0, y1] = [Math.min(x0, x), Math.max(x1, x), Math.min(y0, y), Math.max(y1, y)];
      const neighbours = [x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1, p - width, p + width];
      for (const q of neighbours) {
        if (q < 0 || q >= mask.length || mask[q] !== 1 || seen[q] === 1) continue;
        seen[q] = 1;
        stack.push(q);
      }
    }
    out.push({ count, x0, y0, w: x1 - x0 + 1, h: y1 - y0 + 1 });
  }
  return out;
}

/** A bubble's rim: wide enough, about round, thin, and with a centre free of rim pixels. */
function isRing(part: Component, mask: Uint8Array, width: number): boolean {
  if (part.w < MIN_RIM_SIDE || part.h < MIN_RIM_SIDE) return false;
  const aspect = part.w / part.h;
  if (aspect > MAX_RIM_ASPECT || aspect < 1 / MAX_RIM_ASPECT) return false;
  if (part.count / (part.w * part.h) >= MAX_RIM_FILL) return false;
  let centre = 0;
  let marked = 0;
  const [qx, qy] = [Math.floor(part.w / 4), Math.floor(part.h / 4)];
  for (let y = part.y0 + qy; y < part.y0 + part.h - qy; y++) {
    for (let x = part.x0 + qx; x < part.x0 + part.w - qx; x++) {
      centre++;
      marked += mask[y * width + x] ?? 0;
    }
  }
  return centre > 0 && marked / centre < MAX_RIM_CENTRE_SHARE;
}
