/**
 * Pixel scale relative to the original IICBU 2008 release (1388x1040 fields): the one unit in
 * which recipes, stores and models state their resolution, whatever copy an image comes from.
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

/** Scale inferred from an image whose aspect is the original release's 1388x1040. */
export function inferScale(width: number, height: number): number | null {
  const scale = width / ORIGINAL_WIDTH;
  return Math.abs(height / ORIGINAL_HEIGHT - scale) / scale < 0.01 ? Number(scale.toFixed(4)) : null;
}
