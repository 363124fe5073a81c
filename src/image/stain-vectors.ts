/** Ruifrok & Johnston's colour deconvolution matrices, shared by normalisation and augmentation. */

// Ruifrok & Johnston's stain vectors (haematoxylin, eosin, DAB) as in scikit-image's rgb2hed.
export const RGB_FROM_HED = [
  [0.65, 0.7, 0.29],
  [0.07, 0.99, 0.11],
  [0.27, 0.57, 0.78],
];

function invert3(m: number[][]): number[][] {
  const g = (r: number, c: number): number => m[r]?.[c] ?? 0;
  const det =
    g(0, 0) * (g(1, 1) * g(2, 2) - g(1, 2) * g(2, 1)) -
    g(0, 1) * (g(1, 0) * g(2, 2) - g(1, 2) * g(2, 0)) +
    g(0, 2) * (g(1, 0) * g(2, 1) - g(1, 1) * g(2, 0));
  const cof = (r: number, c: number): number => {
    const rows = [0, 1, 2].filter((i) => i !== r);
    const cols = [0, 1, 2].filter((i) => i !== c);
    const [r0 = 0, r1 = 0] = rows;
    const [c0 = 0, c1 = 0] = cols;
    return ((r + c) % 2 ? -1 : 1) * (g(r0, c0) * g(r1, c1) - g(r0, c1) * g(r1, c0));
  };
  return [0, 1, 2].map((r) => [0, 1, 2].map((c) => cof(c, r) / det));
}

export const HED_FROM_RGB = invert3(RGB_FROM_HED);

/** Optical density (base 10) of each 8-bit channel value; 0 is read as 1, so it stays finite. */
export const OPTICAL_DENSITY = Float64Array.from(
  { length: 256 },
  (_, v) => -Math.log10(Math.max(v, 1) / 255),
);
