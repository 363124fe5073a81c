/**
 * Geometry in physical units: microns per pixel (um/px), as slides, Slideflow (`tile_um`) and
 * TIAToolbox (`IOConfig`) state it. The scale relative to the original IICBU 2008 release
 * (1388x1040 fields, 0.32 um/px) is a derived alias that recipes, stores and old packages still
 * accept: scale = 0.32 / mpp.
 */
export const ORIGINAL_WIDTH = 1388;
export const ORIGINAL_HEIGHT = 1040;

/**
 * Microns per pixel of the original release. The release does not state it; 1388x1040 is the
 * frame of the Zeiss AxioCam MRc5 (6.45 um pixels) that IICBU 2008 describes behind a 20x
 * objective, which gives 0.32 um per pixel. Whole-slide inference turns a model's relative scale
 * into microns with it; `--model-mpp` overrides it.
 */
export const ORIGINAL_MPP = 0.32;

/** Microns per pixel of a scale relative to the release (null: each image at its own, unknown). */
export function mppOfScale(scale: number | null): number | null {
  return scale === null ? null : ORIGINAL_MPP / scale;
}

/**
 * The scale relative to the release of a resolution in microns per pixel, to 4 significant
 * digits (as scales are inferred): 1.0667 um/px is scale 0.3, the 0.3x copy's.
 */
export function scaleOfMpp(mpp: number): number {
  return Number((ORIGINAL_MPP / mpp).toPrecision(4));
}

/** Scale inferred from an image whose aspect is the original release's 1388x1040. */
export function inferScale(width: number, height: number): number | null {
  const scale = width / ORIGINAL_WIDTH;
  return Math.abs(height / ORIGINAL_HEIGHT - scale) / scale < 0.01 ? Number(scale.toFixed(4)) : null;
}
