/**
 * Whole-slide images through OpenSlide (SVS, NDPI, MRXS, SCN, BIF, and tiled pyramidal TIFF):
 * the slide's levels, its microns per pixel, its associated images, and regions read as 8-bit
 * RGB off the event loop. A slide is never decoded whole: callers read it region by region.
 * The native side is a small second addon (native/slide); every limit and default is here.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { PathotypeError } from '../errors.js';
import type { RgbImage } from '../image/image-io.js';

/** The largest region one read may return: far above a tile, far below the memory limit. */
export const MAX_REGION_PIXELS = 64 * 1024 * 1024;
/** Larger sides than this are not slides but damaged headers. */
export const MAX_SLIDE_SIDE = 2_000_000;

export interface SlideLevel {
  width: number;
  height: number;
  /** Level-0 pixels per pixel of this level. */
  downsample: number;
}

/** The level with the largest downsample not above `downsample` (the sharpest read that is enough). */
export function levelFor(info: Pick<SlideInfo, 'levels'>, downsample: number): number {
  let best = 0;
  for (const [i, level] of info.levels.entries()) if (level.downsample <= downsample * 1.0001) best = i;
  return best;
}

export interface SlideInfo {
  path: string;
  /** OpenSlide's format name: aperio, hamamatsu, mirax, generic-tiff, ... */
  vendor: string;
  levels: SlideLevel[];
  /** Level 0. */
  width: number;
  height: number;
  /** Microns per level-0 pixel, from the slide's metadata; null when it does not say. */
  mpp: number | null;
  properties: Record<string, string>;
  associated: string[];
}

interface NativeSlideModule {
  open(file: string): Promise<{
    handle: unknown;
    vendor: string;
    levels: SlideLevel[];
    properties: Record<string, string>;
    associated: string[];
  }>;
  readRegion(handle: unknown, x: number, y: number, level: number, w: number, h: number): Promise<RgbImage>;
  readAssociated(handle: unknown, name: string): Promise<RgbImage>;
  close(handle: unknown): void;
  version: string;
}

const addonPath = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../../../native/build/Release/pathotype_slide.node',
);
let addon: NativeSlideModule | undefined;

function slideAddon(): NativeSlideModule {
  if (addon) return addon;
  if (!existsSync(addonPath))
    throw new PathotypeError(
      'ERR_SLIDE_READER',
      `the slide reader is not built (${addonPath} is missing): install libopenslide-dev and run 'npm run build:native'`,
    );
  try {
    addon = createRequire(import.meta.url)(addonPath) as NativeSlideModule;
  } catch (cause) {
    throw new PathotypeError('ERR_SLIDE_READER', `the slide reader failed to load: ${String(cause)}`, {
      cause,
    });
  }
  return addon;
}

function nativeError(error: unknown): PathotypeError {
  if (error instanceof PathotypeError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  const message = error instanceof Error ? error.message : String(error);
  return new PathotypeError(
    code === 'ERR_SLIDE_UNSUPPORTED' ? 'ERR_SLIDE_UNSUPPORTED' : 'ERR_SLIDE',
    message,
    {
      cause: error,
    },
  );
}

/** Microns per pixel: OpenSlide's own property, else the TIFF resolution tags. */
export function micronsPerPixel(properties: Record<string, string>): number | null {
  const mpp = Number(properties['openslide.mpp-x']);
  if (Number.isFinite(mpp) && mpp > 0) return mpp;
  const resolution = Number(properties['tiff.XResolution']);
  const unit = properties['tiff.ResolutionUnit'];
  if (!(resolution > 0)) return null;
  if (unit === 'centimeter') return 10_000 / resolution;
  if (unit === 'inch') return 25_400 / resolution;
  return null;
}

export class Slide {
  readonly info: SlideInfo;
  readonly #handle: unknown;
  #closed = false;

  private constructor(info: SlideInfo, handle: unknown) {
    this.info = info;
    this.#handle = handle;
  }

  static async open(file: string): Promise<Slide> {
    const resolved = path.resolve(file);
    if (!existsSync(resolved)) throw new PathotypeError('ERR_NOT_FOUND', `${resolved} does not exist`);
    let opened;
    try {
      opened = await slideAddon().open(resolved);
    } catch (error) {
      throw nativeError(error);
    }
    const [base] = opened.levels;
    const slide = new Slide(
      {
        path: resolved,
        vendor: opened.vendor,
        levels: opened.levels,
        width: base?.width ?? 0,
        height: base?.height ?? 0,
        mpp: micronsPerPixel(opened.properties),
        properties: opened.properties,
        associated: opened.associated,
      },
      opened.handle,
    );
    const bad = opened.levels.find(
      (l) => !(l.width >= 1 && l.height >= 1) || l.width > MAX_SLIDE_SIDE || l.height > MAX_SLIDE_SIDE,
    );
    if (!base || bad) {
      await slide.close();
      throw new PathotypeError(
        'ERR_SLIDE',
        `${resolved} declares an impossible size (${bad?.width ?? 0}x${bad?.height ?? 0})`,
      );
    }
    return slide;
  }

  /** The level with the largest downsample not above `downsample` (OpenSlide's own rule). */
  levelFor(downsample: number): number {
    return levelFor(this.info, downsample);
  }

  /**
   * A region given in level-0 coordinates and read at `level`: width and height are in that
   * level's pixels. Beyond the slide's edge OpenSlide returns transparent, which becomes white.
   */
  async readRegion(region: {
    x: number;
    y: number;
    level: number;
    width: number;
    height: number;
  }): Promise<RgbImage> {
    const { x, y, level, width, height } = region;
    if (this.#closed) throw new PathotypeError('ERR_SLIDE', 'the slide is closed');
    if (!Number.isInteger(level) || level < 0 || level >= this.info.levels.length)
      throw new PathotypeError(
        'ERR_SLIDE',
        `level ${level} is not one of the slide's ${this.info.levels.length}`,
      );
    if (![x, y, width, height].every(Number.isInteger) || width < 1 || height < 1)
      throw new PathotypeError(
        'ERR_SLIDE',
        `the region ${width}x${height} at (${x}, ${y}) is not whole pixels`,
      );
    if (width * height > MAX_REGION_PIXELS)
      throw new PathotypeError('ERR_SLIDE', `a ${width}x${height} region is more than one read may hold`);
    try {
      return await slideAddon().readRegion(this.#handle, x, y, level, width, height);
    } catch (error) {
      throw nativeError(error);
    }
  }

  async associated(name: string): Promise<RgbImage> {
    if (!this.info.associated.includes(name))
      throw new PathotypeError(
        'ERR_NOT_FOUND',
        `the slide has no associated image '${name}' (${this.info.associated.join(', ') || 'none'})`,
      );
    try {
      return await slideAddon().readAssociated(this.#handle, name);
    } catch (error) {
      throw nativeError(error);
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    slideAddon().close(this.#handle);
    return Promise.resolve();
  }
}

/** Formats that are slides whatever their size; a TIFF is one when it is tiled and pyramidal. */
export const SLIDE_EXTENSIONS = [
  '.svs',
  '.ndpi',
  '.mrxs',
  '.scn',
  '.bif',
  '.vms',
  '.vmu',
  '.svslide',
] as const;

/**
 * Whether a file goes to whole-slide inference: a slide format, or a TIFF that OpenSlide reads
 * with more than one level. Other images (the fields of today) go to the image predictor.
 */
export async function isWholeSlide(file: string): Promise<boolean> {
  const extension = path.extname(file).toLowerCase();
  if ((SLIDE_EXTENSIONS as readonly string[]).includes(extension)) return true;
  if (extension !== '.tif' && extension !== '.tiff') return false;
  try {
    const slide = await Slide.open(file);
    const levels = slide.info.levels.length;
    await slide.close();
    return levels > 1;
  } catch (error) {
    if (error instanceof PathotypeError && error.code === 'ERR_SLIDE_UNSUPPORTED') return false;
    throw error;
  }
}
