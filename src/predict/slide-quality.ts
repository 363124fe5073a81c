/**
 * The quality of a slide's tiles and the verdict on the clear ones: each tile measured for the
 * input checks that have a tile limit (image/input-checks.ts), at the pixels the model sees,
 * judged by the same function as a field image, and the slide answered from the tiles that pass
 * every check (the others are kept, marked, for the viewer).
 */
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { densityRatios } from '../image/artefacts.js';
import type { RgbImage } from '../image/image-io.js';
import {
  failedChecks,
  measureTile,
  refusal,
  TILE_CHECKS,
  type Assessment,
  type Check,
} from '../image/input-checks.js';
import { eachCell } from '../image/judged-pixels.js';
import type { Grid } from '../image/tiling.js';
import type { SlideInfo } from '../slide/slide.js';
import type { Predictor } from './predictor.js';
import type { Verdict } from './verdict.js';

/** Each tile check's measure of the given cells of a region at the model's scale (`scale`), by check name. */
export async function measureTiles(
  region: RgbImage,
  grid: Grid,
  cells: readonly (readonly [number, number])[],
  scale: number | null,
): Promise<Map<string, Float32Array>> {
  const values = TILE_CHECKS.map(() => new Float32Array(cells.length));
  await eachCell(region, grid, cells, scale, (pixels, i) => {
    for (const [c, check] of TILE_CHECKS.entries())
      (values[c] as Float32Array)[i] = measureTile(check, pixels);
  });
  return new Map(TILE_CHECKS.map((c, i) => [c.name, values[i] as Float32Array]));
}

/** Each tile's judgement: its measures as judged, the checks it fails, and what the viewer shows. */
export interface TileJudgement {
  assessment: Partial<Assessment>;
  failed: Check[];
  focus: number;
  blurred: boolean;
  densityRatio: number;
  folded: boolean;
}

/**
 * Every kept tile judged, from the tile checks' measures of all of them (`measured`, by check
 * name): the measures judged against the slide's other tiles (`overSlide`) are taken so first.
 */
export function judgeTiles(measured: ReadonlyMap<string, Float32Array>, count: number): TileJudgement[] {
  const raw = (name: string): Float32Array => measured.get(name) ?? new Float32Array(count);
  const judged = new Map(
    TILE_CHECKS.map((c) => [c.name, c.overSlide ? c.overSlide(raw(c.name)) : raw(c.name)]),
  );
  // The fold check's measure of a tile is its density; the viewer shows it over the slide's median tile's.
  const ratios = densityRatios(raw('fold'));
  return Array.from({ length: count }, (_, k) => {
    const assessment: Partial<Assessment> = {};
    for (const [name, values] of judged) assessment[name] = values[k] ?? 0;
    const failed = failedChecks(assessment, 'tile');
    return {
      assessment,
      failed,
      focus: assessment.focus ?? 0,
      blurred: failed.some((c) => c.name === 'focus'),
      densityRatio: ratios[k] ?? 0,
      folded: failed.some((c) => c.name === 'fold'),
    };
  });
}

/** How many of the tiles each tile check refused, by check name (a tile failing two counts in both). */
export function refusalCounts(judged: readonly TileJudgement[]): Record<string, number> {
  return Object.fromEntries(
    TILE_CHECKS.map((c) => [c.name, judged.filter((t) => t.failed.includes(c)).length]),
  );
}

/**
 * The refusal of a slide none of whose tiles passes: the check that refused most of them, in its
 * own message when it refused them all (its value the one closest to passing), or the count by
 * check.
 */
function noClearTile(info: SlideInfo, judged: readonly TileJudgement[]): PathotypeError {
  const byName = refusalCounts(judged);
  const counts = TILE_CHECKS.map((c) => byName[c.name] ?? 0);
  const most = counts.indexOf(Math.max(...counts));
  const check = TILE_CHECKS[most] as Check;
  const subject = `every tissue tile of ${path.basename(info.path)}`;
  if (counts[most] === judged.length) {
    const values = judged.map((t) => t.assessment[check.name] ?? 0);
    const closest = check.bound === 'min' ? Math.max(...values) : Math.min(...values);
    return refusal(check, subject, closest, 'tile');
  }
  const by = TILE_CHECKS.map((c, i) => `${counts[i] ?? 0} fail ${c.name} (${c.code})`).join(', ');
  return new PathotypeError(check.code, `${subject} fails a tile check: ${by}`);
}

/**
 * The slide's answer from its clear tiles: those that pass every tile check. The others are
 * kept, marked, for the viewer; each tile's weight in the answer (the left-out ones weigh
 * nothing) under attention.
 */
export function verdictOnClearTiles(
  predictor: Predictor,
  info: SlideInfo,
  outputs: {
    probabilities: Float32Array;
    logProbabilities: Float32Array | undefined;
    attention: Float32Array | undefined;
  },
  tiles: readonly TileJudgement[],
): { verdict: Verdict; weights: Float32Array | undefined } {
  const classes = predictor.classes.length;
  const { probabilities, logProbabilities, attention } = outputs;
  const clear = Array.from(tiles.keys()).filter((k) => tiles[k]?.failed.length === 0);
  if (clear.length === 0) throw noClearTile(info, tiles);
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
