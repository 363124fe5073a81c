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

/** The overlay alone: RGBA, transparent outside patches. */
export function overlayPixels(grid: PatchGrid, maxOpacity = 0.55, kind: OverlayKind = 'classes'): Uint8Array {
  const out = new Uint8Array(grid.width * grid.height * 4);
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
        const i = (y * grid.width + x) * 4;
        // Overlapping patches: the more confident one shows.
        if ((out[i + 3] ?? 0) >= alpha) continue;
        const edge = x === x0 || y === y0;
        out[i] = edge ? 255 : r;
        out[i + 1] = edge ? 255 : g;
        out[i + 2] = edge ? 255 : b;
        out[i + 3] = edge ? Math.min(255, alpha + 40) : alpha;
      }
    }
  }
  return out;
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
