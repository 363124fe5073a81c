/**
 * Reading images with sharp (libvips): TIFF, PNG, JPEG and WebP; 8- or 16-bit; grey, RGB or with
 * alpha. Everything becomes 8-bit RGB. The header is checked before any pixel is decoded, so a
 * decompression bomb or an unsupported file is rejected cheaply.
 */
import sharp from 'sharp';

import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';

export const SUPPORTED_FORMATS = ['tiff', 'png', 'jpeg', 'webp'] as const;
export type ImageFormat = (typeof SUPPORTED_FORMATS)[number];

/** Largest image accepted by default, in pixels: far above a 1388x1040 field, far below a bomb. */
export const DEFAULT_MAX_PIXELS = LIMITS.imagePixels;

export type ImageErrorCode = 'ERR_IMAGE' | 'ERR_UNSUPPORTED_IMAGE' | 'ERR_IMAGE_TOO_LARGE';

export class ImageError extends PathotypeError {
  constructor(message: string, options?: { cause?: unknown; code?: ImageErrorCode }) {
    super(options?.code ?? 'ERR_IMAGE', message, options);
    this.name = 'ImageError';
  }
}

export interface ImageProbe {
  format: ImageFormat;
  width: number;
  height: number;
  channels: number;
  bitDepth: number;
  hasAlpha: boolean;
}

/** 8-bit RGB pixels, row-major HWC. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

const DEPTH_BITS: Record<string, number> = {
  uchar: 8,
  char: 8,
  ushort: 16,
  short: 16,
  uint: 32,
  int: 32,
  float: 32,
};

function describe(source: string | Buffer): string {
  return typeof source === 'string' ? source : 'the image';
}

/** Reads the header only. */
export async function probeImage(
  source: string | Buffer,
  options: { maxPixels?: number } = {},
): Promise<ImageProbe> {
  let meta: sharp.Metadata;
  try {
    meta = await sharp(source, { limitInputPixels: false }).metadata();
  } catch (cause) {
    throw new ImageError(`${describe(source)} is not a readable image: ${(cause as Error).message}`, {
      cause,
    });
  }
  const format = meta.format === 'jpg' ? 'jpeg' : meta.format;
  if (!format || !(SUPPORTED_FORMATS as readonly string[]).includes(format)) {
    throw new ImageError(
      `${describe(source)} is ${format ?? 'of an unknown format'}; pathotype reads TIFF, PNG, JPEG and WebP`,
      { code: 'ERR_UNSUPPORTED_IMAGE' },
    );
  }
  // EXIF orientations 5-8 turn the image a quarter: decoding applies it (sharp's rotate()), so the
  // size the rest of pathotype sees, stores and draws the heatmap on is the upright one.
  const quarterTurned = (meta.orientation ?? 1) >= 5;
  const width = quarterTurned ? meta.height : meta.width;
  const height = quarterTurned ? meta.width : meta.height;
  if (!width || !height) throw new ImageError(`${describe(source)} has no width or height in its header`);
  const maxPixels = options.maxPixels ?? DEFAULT_MAX_PIXELS;
  if (width * height > maxPixels) {
    throw new ImageError(
      `${describe(source)} is ${width}x${height} (${((width * height) / 1e6).toFixed(0)} Mpx), above the limit of ` +
        `${(maxPixels / 1e6).toFixed(0)} Mpx`,
      { code: 'ERR_IMAGE_TOO_LARGE' },
    );
  }
  return {
    format: format as ImageFormat,
    width,
    height,
    channels: meta.channels ?? 3,
    bitDepth: DEPTH_BITS[meta.depth ?? 'uchar'] ?? 8,
    hasAlpha: meta.hasAlpha ?? false,
  };
}

/**
 * Decodes to 8-bit RGB, optionally resized to `width` x `height`. Transparent pixels become white,
 * the colour of empty glass in brightfield images. A resize works on the fully decoded pixels
 * (resizeRgb): sharp would otherwise let libjpeg or libwebp shrink a JPEG or WebP while decoding
 * (shrink-on-load), a second resampling that no other tool reproduces and that moved a
 * full-resolution WebP's answer 0.07 away from its 0.3x twin's (README: the twin figure).
 */
export async function decodeRgb(
  source: string | Buffer,
  options: { width?: number; height?: number; maxPixels?: number } = {},
): Promise<RgbImage> {
  const probe = await probeImage(source, options);
  let decoded: RgbImage;
  try {
    const { data, info } = await sharp(source, {
      limitInputPixels: options.maxPixels ?? DEFAULT_MAX_PIXELS,
      failOn: 'error',
    })
      .rotate()
      .flatten({ background: '#ffffff' })
      .toColourspace('srgb')
      .raw({ depth: 'uchar' })
      .toBuffer({ resolveWithObject: true });
    if (info.channels !== 3)
      throw new ImageError(`${describe(source)} decoded to ${info.channels} channels, not 3`);
    decoded = {
      data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
      width: info.width,
      height: info.height,
    };
  } catch (cause) {
    if (cause instanceof ImageError) throw cause;
    throw new ImageError(`${describe(source)} could not be decoded: ${(cause as Error).message}`, { cause });
  }
  const { width = probe.width, height = probe.height } = options;
  return resizeRgb(decoded, width, height);
}

/** Encodes 8-bit RGB pixels as PNG. */
export async function encodePng(image: RgbImage): Promise<Buffer> {
  return sharp(Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength), {
    raw: { width: image.width, height: image.height, channels: 3 },
  })
    .png()
    .toBuffer();
}

/**
 * Resamples 8-bit RGB pixels to `width` x `height`: libvips' vips_resize with the lanczos3 kernel,
 * the resampling every image takes to a model's scale (model/reproduction.ts states it exactly).
 */
export async function resizeRgb(image: RgbImage, width: number, height: number): Promise<RgbImage> {
  if (image.width === width && image.height === height) return image;
  const { data, info } = await sharp(
    Buffer.from(image.data.buffer, image.data.byteOffset, image.data.byteLength),
    {
      raw: { width: image.width, height: image.height, channels: 3 },
    },
  )
    .resize(width, height, { fit: 'fill', kernel: 'lanczos3' })
    .raw()
    .toBuffer({ resolveWithObject: true });
  return {
    data: new Uint8Array(data.buffer, data.byteOffset, data.byteLength),
    width: info.width,
    height: info.height,
  };
}
