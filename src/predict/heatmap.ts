/**
 * Heatmap overlays: the image with its patch grid coloured by predicted class, each patch's
 * opacity following the model's confidence (or, for a model that pools by attention, in one
 * colour with opacity following the patch's attention weight). PNG, at the size the model saw the image.
 */
import sharp from 'sharp';

import type { RgbImage } from '../image/image-io.js';
import type { PatchGrid } from './predictor.js';

/** Colour-blind-safe class colours (Okabe & Ito). */
export const CLASS_COLOURS: readonly [number, number, number][] = [
  [0, 114, 178],
  [230, 159, 0],
  [0, 158, 115],
  [204, 121, 167],
  [86, 180, 233],
  [213, 94, 0],
  [240, 228, 66],
  [0, 0, 0],
];

export function classColour(index: number): [number, number, number] {
  return CLASS_COLOURS[index % CLASS_COLOURS.length] ?? [0, 0, 0];
}

/** The colour of attention maps (Okabe & Ito's vermillion): opacity is a patch's weight against the largest. */
export const ATTENTION_RGB: [number, number, number] = [213, 94, 0];

/** What an overlay shows: each patch's class (opacity by confidence), or its attention weight. */
export type OverlayKind = 'classes' | 'attention';

/** Where no patch was judged (margins beyond the grid, background): grey hatching, never blank. */
export const NOT_ANALYSED_RGBA: readonly [number, number, number, number] = [90, 90, 90, 110];
/** The hatching's period and stroke, in pixels of the model's scale. */
const HATCH = { period: 8, stroke: 2 } as const;

/**
 * The overlay alone, RGBA: each patch filled edge to edge (no seams between neighbours), and
 * every pixel no patch covered hatched as not analysed, so the map covers the whole image.
 */
export function overlayPixels(grid: PatchGrid, maxOpacity = 0.55, kind: OverlayKind = 'classes'): Uint8Array {
  const out = new Uint8Array(grid.width * grid.height * 4);
  const covered = new Uint8Array(grid.width * grid.height);
  const weights = grid.attention ?? [];
  const top = Math.max(0, ...weights);
  for (const [k, [col, row, cls, confidence]] of grid.cells.entries()) {
    const [r, g, b] = kind === 'attention' ? ATTENTION_RGB : classColour(cls);
    const strength = kind === 'attention' ? (top > 0 ? (weights[k] ?? 0) / top : 0) : confidence;
    const alpha = Math.round(255 * maxOpacity * Math.max(0, Math.min(1, strength)));
    const x0 = col * grid.stride;
    const y0 = row * grid.stride;
    for (let y = y0; y < Math.min(grid.height, y0 + grid.patchSize); y++) {
      for (let x = x0; x < Math.min(grid.width, x0 + grid.patchSize); x++) {
        const p = y * grid.width + x;
        const i = p * 4;
        // Overlapping patches: the more confident one shows.
        if (covered[p] === 1 && (out[i + 3] ?? 0) >= alpha) continue;
        covered[p] = 1;
        out[i] = r;
        out[i + 1] = g;
        out[i + 2] = b;
        out[i + 3] = alpha;
      }
    }
  }
  hatchUncovered(out, covered, grid.width);
  return out;
}

function hatchUncovered(out: Uint8Array, covered: Uint8Array, width: number): void {
  const [r, g, b, a] = NOT_ANALYSED_RGBA;
  for (let p = 0; p < covered.length; p++) {
    if (covered[p] === 1) continue;
    const x = p % width;
    const y = (p - x) / width;
    if ((x + y) % HATCH.period >= HATCH.stroke) continue;
    out.set([r, g, b, a], p * 4);
  }
}

export async function overlayPng(grid: PatchGrid, kind: OverlayKind = 'classes'): Promise<Buffer> {
  return sharp(Buffer.from(overlayPixels(grid, 0.55, kind)), {
    raw: { width: grid.width, height: grid.height, channels: 4 },
  })
    .png()
    .toBuffer();
}

/** The image with the overlay composited on it, as PNG, scaled to at most `maxWidth` pixels wide. */
export async function heatmapPng(
  image: RgbImage,
  grid: PatchGrid,
  maxWidth = 1400,
  kind: OverlayKind = 'classes',
): Promise<Buffer> {
  const overlay = await overlayPng(grid, kind);
  const base = sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  });
  const composed = await base
    .composite([{ input: overlay }])
    .png()
    .toBuffer();
  return image.width > maxWidth ? sharp(composed).resize(maxWidth).png().toBuffer() : composed;
}
