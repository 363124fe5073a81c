/**
 * Re-stained copies of real fields and slides: each pixel's haematoxylin and eosin densities
 * (colour deconvolution with the Ruifrok and Johnston vectors) scaled, then composed again, as a
 * laboratory staining longer or with other reagents would leave it.
 */
import sharp from 'sharp';

import { MPP_03X } from '../src/acquire/slide-mosaic.js';
import { HED_FROM_RGB, RGB_FROM_HED } from '../src/image/stain-vectors.js';

async function restainedPixels(
  source: string,
  haematoxylin: number,
  eosin: number,
): Promise<{ data: Buffer; width: number; height: number }> {
  const { data, info } = await sharp(source, { limitInputPixels: false })
    .removeAlpha()
    .raw()
    .toBuffer({ resolveWithObject: true });
  const px = new Uint8Array(data);
  const gain = [haematoxylin, eosin, 1];
  for (let i = 0; i < px.length; i += 3) {
    const od = [0, 1, 2].map((c) => -Math.log10(Math.max(px[i + c] ?? 0, 1) / 255));
    const stains = [0, 1, 2].map((j) => od.reduce((s, o, c) => s + o * (HED_FROM_RGB[c]?.[j] ?? 0), 0));
    for (let c = 0; c < 3; c++) {
      const back = stains.reduce((s, v, j) => s + v * (gain[j] ?? 1) * (RGB_FROM_HED[j]?.[c] ?? 0), 0);
      px[i + c] = Math.max(0, Math.min(255, Math.round(255 * 10 ** -back)));
    }
  }
  return { data: Buffer.from(px), width: info.width, height: info.height };
}

/** A field re-stained, as PNG. */
export async function restained(file: string, haematoxylin: number, eosin: number): Promise<Buffer> {
  const { data, width, height } = await restainedPixels(file, haematoxylin, eosin);
  return sharp(data, { raw: { width, height, channels: 3 } })
    .png()
    .toBuffer();
}

/** A mosaic slide (level 0 read whole: the tests' slides are small) re-stained into a tiled pyramid with its resolution. */
export async function writeRestainedSlide(
  slide: string,
  out: string,
  haematoxylin: number,
  eosin: number,
  mpp = MPP_03X,
): Promise<void> {
  const { data, width, height } = await restainedPixels(slide, haematoxylin, eosin);
  await sharp(data, { raw: { width, height, channels: 3 } })
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: 256,
      tileHeight: 256,
      compression: 'deflate',
      xres: 1000 / mpp,
      yres: 1000 / mpp,
      resolutionUnit: 'cm',
    })
    .toFile(out);
}
