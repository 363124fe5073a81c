/**
 * Deep Zoom (DZI) tiles of a slide, for OpenSeadragon and the viewers built on it: the pyramid
 * of halvings from the slide's full size down to one pixel, each level cut into 254 px tiles
 * with 1 px overlap (OpenSlide's own DeepZoomGenerator layout). Each tile is read from the
 * nearest slide level and resampled, so a zoomed-out view never reads level 0.
 */
import sharp from 'sharp';

import { PathotypeError } from '../errors.js';
import { resizeRgb } from '../image/image-io.js';
import { LIMITS } from '../limits.js';
import type { Slide } from './slide.js';

export const DZ_TILE_SIZE = 254;
export const DZ_OVERLAP = 1;

export interface DeepZoomLevel {
  width: number;
  height: number;
  cols: number;
  rows: number;
}

/** The Deep Zoom levels of a width x height image, from 1x1 (level 0) to full size. */
export function deepZoomLevels(width: number, height: number): DeepZoomLevel[] {
  const sizes: [number, number][] = [[width, height]];
  while (sizes.at(-1)?.some((s) => s > 1)) {
    const [w, h] = sizes.at(-1) as [number, number];
    sizes.push([Math.max(1, Math.ceil(w / 2)), Math.max(1, Math.ceil(h / 2))]);
  }
  return sizes.reverse().map(([w, h]) => ({
    width: w,
    height: h,
    cols: Math.ceil(w / DZ_TILE_SIZE),
    rows: Math.ceil(h / DZ_TILE_SIZE),
  }));
}

export function deepZoomXml(width: number, height: number, format: 'jpeg' | 'png'): string {
  return (
    '<?xml version="1.0" encoding="UTF-8"?>\n' +
    `<Image xmlns="http://schemas.microsoft.com/deepzoom/2008" Format="${format}" Overlap="${DZ_OVERLAP}" TileSize="${DZ_TILE_SIZE}">` +
    `<Size Width="${width}" Height="${height}"/></Image>\n`
  );
}

/** One Deep Zoom tile of the slide as JPEG. */
export async function deepZoomTile(slide: Slide, level: number, col: number, row: number): Promise<Buffer> {
  const levels = deepZoomLevels(slide.info.width, slide.info.height);
  const dz = levels[level];
  if (
    !dz ||
    !Number.isInteger(col) ||
    !Number.isInteger(row) ||
    col < 0 ||
    row < 0 ||
    col >= dz.cols ||
    row >= dz.rows
  )
    throw new PathotypeError('ERR_NOT_FOUND', `no Deep Zoom tile ${level}/${col}_${row}`);
  // Level-0 pixels per pixel of this Deep Zoom level.
  const scale = 2 ** (levels.length - 1 - level);
  const x0 = Math.max(0, col * DZ_TILE_SIZE - DZ_OVERLAP);
  const y0 = Math.max(0, row * DZ_TILE_SIZE - DZ_OVERLAP);
  const x1 = Math.min(dz.width, (col + 1) * DZ_TILE_SIZE + DZ_OVERLAP);
  const y1 = Math.min(dz.height, (row + 1) * DZ_TILE_SIZE + DZ_OVERLAP);
  const slideLevel = slide.levelFor(scale);
  const ds = slide.info.levels[slideLevel]?.downsample ?? 1;
  const read = {
    x: Math.round(x0 * scale),
    y: Math.round(y0 * scale),
    level: slideLevel,
    width: Math.max(1, Math.ceil(((x1 - x0) * scale) / ds)),
    height: Math.max(1, Math.ceil(((y1 - y0) * scale) / ds)),
  };
  // A slide without levels near this zoom would make one tile read the whole of a huge region.
  if (read.width * read.height > LIMITS.deepZoomReadPixels)
    throw new PathotypeError(
      'ERR_TOO_MUCH_WORK',
      `Deep Zoom tile ${level}/${col}_${row} would read ${((read.width * read.height) / 1e6).toFixed(0)} Mpx from the slide (it has no level near this zoom); at most ${LIMITS.deepZoomReadPixels / 1e6} Mpx`,
    );
  const region = await slide.readRegion(read);
  const tile = await resizeRgb(region, x1 - x0, y1 - y0);
  return sharp(Buffer.from(tile.data.buffer, tile.data.byteOffset, tile.data.byteLength), {
    raw: { width: tile.width, height: tile.height, channels: 3 },
  })
    .jpeg({ quality: 85 })
    .toBuffer();
}
