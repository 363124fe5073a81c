/**
 * The quality of a slide's tiles and the verdict on the clear ones: each tile measured for the
 * tile checks, judged, and the slide answered from the tiles that pass (the others are kept,
 * marked, for the viewer).
 */
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { densityRatios, isFolded, tissueDensity } from '../image/artefacts.js';
import { cellMeasures, focusMeasure, MIN_TILE_FOCUS } from '../image/focus.js';
import type { RgbImage } from '../image/image-io.js';
import type { Grid } from '../image/tiling.js';
import type { SlideInfo } from '../slide/slide.js';
import type { Predictor } from './predictor.js';
import type { Verdict } from './verdict.js';

/** What is measured of each tile, in the order the region checkpoint keeps them. */
export const TILE_MEASURES = [
  { name: 'focus', of: focusMeasure },
  { name: 'density', of: tissueDensity },
] as const;

/** Each measure of the given cells of a region at the model's scale (`scale`), by name. */
export async function measureTiles(
  region: RgbImage,
  grid: Grid,
  cells: readonly (readonly [number, number])[],
  scale: number | null,
): Promise<Map<string, Float32Array>> {
  const values = await cellMeasures(
    region,
    grid,
    cells,
    scale,
    TILE_MEASURES.map((m) => m.of),
  );
  return new Map(TILE_MEASURES.map((m, i) => [m.name, values[i] as Float32Array]));
}

/** Each tile's judgement: its measures, and whether it is left out of the answer and why. */
export interface TileJudgement {
  focus: number;
  blurred: boolean;
  densityRatio: number;
  folded: boolean;
}

export function judgeTiles(measures: ReadonlyMap<string, Float32Array>, count: number): TileJudgement[] {
  const focus = measures.get('focus') ?? new Float32Array(count);
  const ratios = densityRatios(measures.get('density') ?? new Float32Array(count));
  return Array.from({ length: count }, (_, k) => ({
    focus: focus[k] ?? 0,
    blurred: (focus[k] ?? 0) < MIN_TILE_FOCUS,
    densityRatio: ratios[k] ?? 0,
    folded: isFolded(ratios[k] ?? 0),
  }));
}

/**
 * The slide's answer from its clear tiles: in focus and not folded. The others are kept, marked,
 * for the viewer; each tile's weight in the answer (the left-out ones weigh nothing) under attention.
 */
export function verdictOnClearTiles(
  predictor: Predictor,
  info: SlideInfo,
  outputs: {
    probabilities: Float32Array;
    logProbabilities: Float32Array | undefined;
    attention: Float32Array | undefined;
  },
  tiles: readonly { blurred: boolean; folded: boolean }[],
): { verdict: Verdict; weights: Float32Array | undefined } {
  const classes = predictor.classes.length;
  const { probabilities, logProbabilities, attention } = outputs;
  const clear = Array.from(tiles.keys()).filter((k) => !tiles[k]?.blurred && !tiles[k]?.folded);
  if (clear.length === 0) {
    const allBlurred = tiles.every((t) => t.blurred);
    throw new PathotypeError(
      allBlurred ? 'ERR_BLURRED' : 'ERR_TISSUE_FOLD',
      `every tissue tile of ${path.basename(info.path)} is ${allBlurred ? 'out of focus' : 'out of focus or folded'}`,
    );
  }
  const rowsOf = (a: Float32Array): Float32Array => {
    const out = new Float32Array(clear.length * classes);
    for (const [i, k] of clear.entries()) out.set(a.subarray(k * classes, (k + 1) * classes), i * classes);
    return out;
  };
  const { vote, verdict } = predictor.verdictOn(
    {
      probabilities: rowsOf(probabilities),
      ...(logProbabilities ? { logProbabilities: rowsOf(logProbabilities) } : {}),
      ...(attention ? { attention: Float32Array.from(clear, (k) => attention[k] ?? 0) } : {}),
    },
    clear.length,
  );
  const weights = vote.attention ? new Float32Array(tiles.length) : undefined;
  if (weights && vote.attention) for (const [i, k] of clear.entries()) weights[k] = vote.attention[i] ?? 0;
  return { verdict, weights };
}
