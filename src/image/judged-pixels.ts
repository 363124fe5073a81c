/**
 * The pixels the input checks measure: an image at the model's scale (or a slide tile cut from
 * a region at that scale), and the same pixels at the judging scale. That is the reference scale
 * (0.3 of the release, about 1.07 um/px: focus, folds, bubbles and black ink were calibrated
 * there) where the model sees finer pixels, and the model's own where it sees coarser ones:
 * pixels are reduced to judge them, never enlarged. Enlarging invents blur: a model reading a
 * slide 4x coarser than the reference, its tiles enlarged 4x to be judged, measured every tile of
 * sharp development fields out of focus; and blur finer than the model's pixels is none it sees.
 */
import { artefactStats, type ArtefactStats } from './artefacts.js';
import { resizeRgb, type RgbImage } from './image-io.js';
import { tissueStats, type TissueStats } from './tissue.js';

/** The scale (relative to the release) the checks judge at, unless the model sees coarser. */
export const JUDGING_SCALE = 0.3;

/** Judging-scale pixels per pixel of an image at `scale` (unknown: taken as it is); at most 1. */
function judgingFactor(scale: number | null): number {
  return scale === null || scale <= JUDGING_SCALE + 1e-3 ? 1 : JUDGING_SCALE / scale;
}

/** The image, at `scale`, reduced to the judging scale (returned as it is when already at or below it). */
export async function atJudgingScale(image: RgbImage, scale: number | null): Promise<RgbImage> {
  const factor = judgingFactor(scale);
  if (factor === 1) return image;
  return resizeRgb(
    image,
    Math.max(3, Math.round(image.width * factor)),
    Math.max(3, Math.round(image.height * factor)),
  );
}

/**
 * What the checks measure of one image or tile: its pixels at the model's scale, at the judging
 * scale, and the model's patches it yields. The statistics several checks share are taken once.
 */
export class JudgedPixels {
  #tissue: TissueStats | undefined;
  #artefacts: ArtefactStats | undefined;

  constructor(
    readonly image: RgbImage,
    readonly judged: RgbImage,
    readonly patches: number,
  ) {}

  /** Tissue, H&E colour and coloured ink shares (image/tissue.ts), of the pixels at the model's scale. */
  get tissue(): TissueStats {
    return (this.#tissue ??= tissueStats(this.image));
  }

  /** Folds, bubbles and black ink (image/artefacts.ts), at the judging scale. */
  get artefacts(): ArtefactStats {
    return (this.#artefacts ??= artefactStats(this.judged));
  }
}

/**
 * Each cell (col, row) of `grid` over `region`, an image at `scale`, as its own judged pixels
 * (its box cut from the region reduced once to the judging scale), handed to `each` in order.
 */
export async function eachCell(
  region: RgbImage,
  grid: { patchSize: number; stride: number },
  cells: readonly (readonly [number, number])[],
  scale: number | null,
  each: (pixels: JudgedPixels, index: number) => void,
): Promise<void> {
  const factor = judgingFactor(scale);
  const judged = await atJudgingScale(region, scale);
  const side = Math.max(3, Math.round(grid.patchSize * factor));
  for (const [i, [col, row]] of cells.entries()) {
    const x0 = Math.min(judged.width - side, Math.round(col * grid.stride * factor));
    const y0 = Math.min(judged.height - side, Math.round(row * grid.stride * factor));
    const data = new Uint8Array(side * side * 3);
    for (let y = 0; y < side; y++) {
      const from = ((y0 + y) * judged.width + x0) * 3;
      data.set(judged.data.subarray(from, from + side * 3), y * side * 3);
    }
    const tile = { data, width: side, height: side };
    each(new JudgedPixels(tile, tile, 1), i);
  }
}
