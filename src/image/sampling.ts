/**
 * Pixel sampling and percentiles shared by the normalisers: fitting reads every k-th pixel, so it
 * costs the same for any image size.
 */
const MAX_SAMPLES = 200_000;

export function clampByte(v: number): number {
  return v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
}

/** Every k-th pixel, so that fitting costs the same for any image size. */
export function sampleStep(pixels: number): number {
  return Math.max(1, Math.floor(pixels / MAX_SAMPLES));
}

/** The p-th percentile (0-100) of values sorted ascending. */
export function percentile(sorted: Float32Array | number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.round((p / 100) * (sorted.length - 1))));
  return sorted[i] ?? 0;
}
