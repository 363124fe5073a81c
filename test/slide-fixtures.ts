/**
 * Test slides built from the shared development images: a mosaic of 0.3x fields (and blank
 * glass) written as a tiled pyramidal TIFF with libvips (through sharp), with its microns per
 * pixel in the TIFF resolution tags, as a scanner's generic TIFF export carries them.
 */
import { readdirSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { lymphomaDir } from './helpers.js';

/** Microns per pixel of the 0.3x copy: the original release's 0.32 um over its 0.3005 scale. */
export const MPP_03X = 0.32 / 0.3005;

export interface TestSlide {
  file: string;
  width: number;
  height: number;
  mpp: number;
  /** The fields in the mosaic, row by row; null for a blank (glass) cell. */
  cells: (string | null)[];
  across: number;
}

/** Fields of one class of the development set, sorted, `count` of them. */
export function fieldsOf(className: string, count: number): string[] {
  const dir = path.join(lymphomaDir, className);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .slice(0, count)
    .map((f) => path.join(dir, f));
}

/**
 * A mosaic of 417x312 cells, `across` per row, written as a tiled pyramid. Deflate keeps every
 * pixel exact, so a test can compare a region with the mosaic itself; JPEG is what scanners use.
 */
export async function writeTestSlide(
  file: string,
  cells: (string | null)[],
  options: { across: number; mpp?: number; compression?: 'deflate' | 'jpeg'; cellSize?: [number, number] } = {
    across: 4,
  },
): Promise<TestSlide> {
  const [w, h] = options.cellSize ?? [417, 312];
  const glass = await sharp({ create: { width: w, height: h, channels: 3, background: '#f4f4f2' } })
    .png()
    .toBuffer();
  const inputs = await Promise.all(
    cells.map(async (c) =>
      c ? sharp(c).resize(w, h, { fit: 'fill' }).removeAlpha().png().toBuffer() : glass,
    ),
  );
  const mpp = options.mpp ?? MPP_03X;
  await sharp(inputs, { join: { across: options.across }, limitInputPixels: false })
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: 256,
      tileHeight: 256,
      compression: options.compression ?? 'deflate',
      quality: 90,
      // pixels per mm; sharp writes it per centimetre
      xres: 1000 / mpp,
      yres: 1000 / mpp,
      resolutionUnit: 'cm',
    })
    .toFile(file);
  const meta = await sharp(file).metadata();
  return { file, width: meta.width ?? 0, height: meta.height ?? 0, mpp, cells, across: options.across };
}
