/**
 * Which of a slide's tiles are tissue: a low-resolution overview of the whole slide, its tissue
 * mask (image/tissue.ts), and the model's grid cells that are mostly tissue in it; and the
 * overview's stain densities, the slide's for the drift page and its atypicality (the same view
 * at training and at prediction, so the two are measured alike).
 */
import { PathotypeError } from '../errors.js';
import { resizeRgb, type RgbImage } from '../image/image-io.js';
import { stainDensity, type StainDensity } from '../image/stain-density.js';
import { tissueMask } from '../image/tissue.js';
import type { Slide } from '../slide/slide.js';
import { throwIfStopped } from './stop.js';

/** The tissue mask's longest side, in pixels. */
export const MASK_SIDE = 2048;
/** A tile is read when at least this share of it is tissue in the mask. */
export const MIN_TILE_TISSUE = 0.5;

/** A low-resolution RGB view of the whole slide, read in strips so no read is large. */
async function overview(
  slide: Slide,
  side: number,
  signal: AbortSignal | undefined,
): Promise<{ image: RgbImage; downsample: number }> {
  const { width, height } = slide.info;
  const downsample = Math.max(1, Math.max(width, height) / side);
  const level = slide.levelFor(downsample);
  const ds = slide.info.levels[level]?.downsample ?? 1;
  const outWidth = Math.max(1, Math.round(width / downsample));
  const outHeight = Math.max(1, Math.round(height / downsample));
  const data = new Uint8Array(outWidth * outHeight * 3);
  const levelWidth = Math.ceil(width / ds);
  const stripRows = Math.max(1, Math.floor(8_000_000 / levelWidth));
  let outRow = 0;
  for (let y0 = 0; y0 < height && outRow < outHeight;) {
    throwIfStopped(signal);
    const rowsLevel = Math.min(stripRows, Math.ceil((height - y0) / ds));
    const strip = await slide.readRegion({ x: 0, y: y0, level, width: levelWidth, height: rowsLevel });
    const rowsOut = Math.min(outHeight - outRow, Math.max(1, Math.round((rowsLevel * ds) / downsample)));
    const resized = await resizeRgb(strip, outWidth, rowsOut);
    data.set(resized.data, outRow * outWidth * 3);
    outRow += rowsOut;
    y0 += Math.round(rowsLevel * ds);
  }
  return { image: { data, width: outWidth, height: outHeight }, downsample };
}

/** The grid cells (col, row) whose tile is mostly tissue in the slide's mask, the slide's tissue share and stain densities. */
export async function tissueTiles(
  slide: Slide,
  grid: { size0: number; stride0: number; cols: number; rows: number },
  signal: AbortSignal | undefined,
): Promise<{ kept: [number, number][]; fraction: number; stain: StainDensity }> {
  const { size0, stride0, cols, rows } = grid;
  const view = await overview(slide, MASK_SIDE, signal);
  throwIfStopped(signal);
  const mask = tissueMask(view.image);
  const { width, height } = view.image;
  const tissueOf = (col: number, row: number): number => {
    const x0 = Math.floor((col * stride0) / view.downsample);
    const y0 = Math.floor((row * stride0) / view.downsample);
    const x1 = Math.max(x0 + 1, Math.min(width, Math.ceil((col * stride0 + size0) / view.downsample)));
    const y1 = Math.max(y0 + 1, Math.min(height, Math.ceil((row * stride0 + size0) / view.downsample)));
    let on = 0;
    for (let y = y0; y < y1; y++) for (let x = x0; x < x1; x++) on += mask[y * width + x] ?? 0;
    return on / ((x1 - x0) * (y1 - y0));
  };
  const kept: [number, number][] = [];
  for (let row = 0; row < rows; row++)
    for (let col = 0; col < cols; col++) if (tissueOf(col, row) >= MIN_TILE_TISSUE) kept.push([col, row]);
  if (kept.length === 0)
    throw new PathotypeError('ERR_BACKGROUND', `${slide.info.path} shows no tissue at the model's tile size`);
  return { kept, fraction: mask.reduce((a, b) => a + b, 0) / mask.length, stain: stainDensity(view.image) };
}
