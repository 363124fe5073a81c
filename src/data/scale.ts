/**
 * Pixel scale relative to the original IICBU 2008 release (1388x1040 fields): the one unit in
 * which recipes, stores and models state their resolution, whatever copy an image comes from.
 */
export const ORIGINAL_WIDTH = 1388;
export const ORIGINAL_HEIGHT = 1040;

/** Scale inferred from an image whose aspect is the original release's 1388x1040. */
export function inferScale(width: number, height: number): number | null {
  const scale = width / ORIGINAL_WIDTH;
  return Math.abs(height / ORIGINAL_HEIGHT - scale) / scale < 0.01 ? Number(scale.toFixed(4)) : null;
}
