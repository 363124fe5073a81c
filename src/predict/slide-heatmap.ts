/**
 * A slide's overlay: an RGBA image covering the whole slide at 1/f of its level-0 size (its
 * longest side at most MAX_OVERLAY_SIDE), each tile's step cell in its class colour with opacity
 * following the tile's confidence (or, for the attention map, in one colour with opacity following
 * its attention weight), glass transparent. Drawn over the slide at the same
 * width, it lines up with the tiles (to within one level-0 pixel per f).
 */
import sharp from 'sharp';

import { ATTENTION_RGB, classColour, type OverlayKind } from './heatmap.js';
import type { SlidePrediction, SlideTile } from './slide-predictor.js';

export const MAX_OVERLAY_SIDE = 4096;

/** What an overlay is drawn from: a slide prediction, or a slide's bag of tiles (a report's thumbnail). */
export interface OverlaySource {
  slide: Pick<SlidePrediction['slide'], 'width' | 'height'>;
  tiling: Pick<SlidePrediction['tiling'], 'stride' | 'cols' | 'rows'>;
  tiles: readonly Pick<SlideTile, 'x' | 'y' | 'predicted' | 'probabilities' | 'attention'>[];
}

export interface OverlayOptions {
  maxOpacity?: number;
  /** The longest side of the overlay; MAX_OVERLAY_SIDE by default. */
  maxSide?: number;
  /** The attention map's least opacity share, so that every tile of tissue shows (0: low weights vanish). */
  attentionFloor?: number;
}

export async function slideOverlayPng(
  prediction: OverlaySource,
  kind: OverlayKind = 'classes',
  options: OverlayOptions = {},
): Promise<{ png: Buffer; width: number; height: number; factor: number }> {
  const maxOpacity = options.maxOpacity ?? 0.6;
  const floor = options.attentionFloor ?? 0;
  const top = Math.max(0, ...prediction.tiles.map((t) => t.attention ?? 0));
  const paint = (tile: OverlaySource['tiles'][number]): [number, number, number, number] => {
    if (kind === 'attention') {
      const share = top > 0 ? (tile.attention ?? 0) / top : 0;
      return [...ATTENTION_RGB, Math.round(255 * maxOpacity * Math.max(floor, share))];
    }
    const confidence = tile.probabilities[tile.predicted] ?? 0;
    return [
      ...classColour(tile.predicted),
      Math.round(255 * maxOpacity * Math.min(1, Math.max(0.25, confidence))),
    ];
  };
  const { width: W, height: H } = prediction.slide;
  const factor = Math.max(1, Math.max(W, H) / (options.maxSide ?? MAX_OVERLAY_SIDE));
  const width = Math.max(1, Math.round(W / factor));
  const height = Math.max(1, Math.round(H / factor));
  const { stride, cols, rows } = prediction.tiling;
  const cell = new Int32Array(cols * rows).fill(-1);
  for (const [k, tile] of prediction.tiles.entries()) {
    cell[Math.round(tile.y / stride) * cols + Math.round(tile.x / stride)] = k;
  }
  const out = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    const row = Math.floor(((y + 0.5) * factor) / stride);
    if (row >= rows) continue;
    for (let x = 0; x < width; x++) {
      const col = Math.floor(((x + 0.5) * factor) / stride);
      if (col >= cols) continue;
      const k = cell[row * cols + col] ?? -1;
      const tile = k >= 0 ? prediction.tiles[k] : undefined;
      if (!tile) continue;
      out.set(paint(tile), (y * width + x) * 4);
    }
  }
  const png = await sharp(Buffer.from(out.buffer), { raw: { width, height, channels: 4 } })
    .png()
    .toBuffer();
  return { png, width, height, factor };
}
