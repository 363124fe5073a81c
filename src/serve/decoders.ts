/**
 * Which decoders an upload may reach. A file is judged by its first bytes against the formats
 * the server takes, before any decoder sees it; and libvips' other loaders (SVG through
 * librsvg, HEIF, GIF, PDF, ...) are blocked in the server process through sharp's block/unblock,
 * so a file that slipped past the check still reaches no parser outside the allow-list.
 */
import { open } from 'node:fs/promises';

import sharp from 'sharp';

import { PathotypeError } from '../errors.js';
import type { ImageFormat } from '../image/image-io.js';

/** Each image format the server takes, by the bytes its files start with. */
const IMAGE_MAGIC: Record<ImageFormat, readonly Buffer[]> = {
  tiff: [Buffer.from('II*\0', 'latin1'), Buffer.from('MM\0*', 'latin1')],
  png: [Buffer.from('\x89PNG\r\n\x1a\n', 'latin1')],
  jpeg: [Buffer.from([0xff, 0xd8, 0xff])],
  // RIFF....WEBP: the size in between is checked by the decoder.
  webp: [Buffer.from('RIFF', 'latin1')],
};

/** TIFF, classic and BigTIFF: what the single-file slide formats (SVS, NDPI, SCN, BIF, TIFF) are. */
const TIFF_MAGIC = [...IMAGE_MAGIC.tiff, Buffer.from('II+\0', 'latin1'), Buffer.from('MM\0+', 'latin1')];

/** A slide upload's extension and the bytes its file must start with. */
const SLIDE_MAGIC: Record<string, readonly Buffer[]> = {
  '.tif': TIFF_MAGIC,
  '.tiff': TIFF_MAGIC,
  '.svs': TIFF_MAGIC,
  '.ndpi': TIFF_MAGIC,
  '.scn': TIFF_MAGIC,
  '.bif': TIFF_MAGIC,
  // Sakura's slides are SQLite databases.
  '.svslide': [Buffer.from('SQLite format 3\0', 'latin1')],
};

/** Extensions a slide may be uploaded with (the multi-file formats go by path). */
export const UPLOADED_SLIDE_EXTENSIONS: readonly string[] = Object.keys(SLIDE_MAGIC);

/** libvips' loaders for the formats above; every other loader is blocked. */
const ALLOWED_LOADERS = [
  'VipsForeignLoadTiff',
  'VipsForeignLoadPng',
  'VipsForeignLoadJpeg',
  'VipsForeignLoadWebp',
];

/** Blocks every libvips loader but the allowed ones, for this process (the server's). */
export function blockUntrustedDecoders(): void {
  sharp.block({ operation: ['VipsForeignLoad'] });
  sharp.unblock({ operation: ALLOWED_LOADERS });
}

async function head(file: string, bytes = 16): Promise<Buffer> {
  const handle = await open(file, 'r');
  try {
    const buffer = Buffer.alloc(bytes);
    const { bytesRead } = await handle.read(buffer, 0, bytes, 0);
    return buffer.subarray(0, bytesRead);
  } finally {
    await handle.close();
  }
}

const startsWithAny = (bytes: Buffer, magics: readonly Buffer[]): boolean =>
  magics.some((magic) => bytes.subarray(0, magic.length).equals(magic));

/** The image format an uploaded file's first bytes name; refused (415) when it is none the server takes. */
export async function sniffImage(file: string, fileName: string): Promise<ImageFormat> {
  const bytes = await head(file);
  for (const [format, magics] of Object.entries(IMAGE_MAGIC) as [ImageFormat, readonly Buffer[]][]) {
    if (format === 'webp' && bytes.subarray(8, 12).toString('latin1') !== 'WEBP') continue;
    if (startsWithAny(bytes, magics)) return format;
  }
  throw new PathotypeError(
    'ERR_UNSUPPORTED_IMAGE',
    `${JSON.stringify(fileName)} is not a readable image: the server takes TIFF, PNG, JPEG and WebP, judged by the file's content`,
  );
}

/** Refuses (415) an uploaded slide whose first bytes are not those of the format its extension names. */
export async function checkSlideUpload(file: string, fileName: string, extension: string): Promise<void> {
  const magics = SLIDE_MAGIC[extension];
  if (magics && startsWithAny(await head(file), magics)) return;
  throw new PathotypeError(
    'ERR_SLIDE_UNSUPPORTED',
    `${JSON.stringify(fileName)} is not a ${extension || 'slide'} file: its content is of another format`,
  );
}
