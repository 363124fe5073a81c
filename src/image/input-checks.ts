/**
 * The input checks, one table: what a model made for H&E tissue fields must not judge. A row is
 * one check: the error it refuses with, what it measures, its limit for a field image and for a
 * slide tile (null: tiles are not judged by it), its one message and its measure. An image is
 * measured once into an assessment (`assess`; `prepare` keeps it per image in the patch store),
 * and one function (`failedChecks`) judges a field's assessment or a tile's against the table,
 * in the table's order. The README, the ONNX sidecar and a slide's quality summary list the checks
 * from INPUT_CHECKS (`checkList`).
 *
 * Adding a check: a row here and its measure (a function of JudgedPixels, in its own module).
 */
import { PathotypeError, type ErrorCode } from '../errors.js';
import { densityRatios, isFolded, tissueDensity } from './artefacts.js';
import { focusMeasure } from './focus.js';
import type { JudgedPixels } from './judged-pixels.js';

/** What is judged: a field image (a file, an upload) or one tile of a slide. */
export type Judged = 'field' | 'tile';

export interface InputCheck {
  /** The measure's key in an assessment and in a patch store's per-image measures. */
  name: string;
  code: ErrorCode;
  /** What it measures, in words. */
  measures: string;
  /** A judged image or tile is refused below the limit ('min') or above it ('max'). */
  bound: 'min' | 'max';
  /** The limit for a field image. */
  field: number;
  /** The limit for a slide tile; null: tiles are not judged by this check. */
  tile: number | null;
  /** How a value (and the limit) reads in a message. */
  format: (value: number) => string;
  /** Its one message: `subject` ('sj-03.png', 'every tissue tile of s.tif'), the value and the limit as formatted. */
  message: (subject: string, value: string, limit: string) => string;
  /** Its measure of a field image, and of a tile unless `tileMeasure` says otherwise. */
  measure: (pixels: JudgedPixels) => number;
  tileMeasure?: (pixels: JudgedPixels) => number;
  /**
   * A tile measured against the slide's other tiles: each tile's `measure` becomes, once every
   * tile is measured, the value judged (fold: a tile's density over the slide's median tile's).
   */
  overSlide?: (measured: Float32Array) => Float32Array;
}

const percent = (digits: number) => (v: number) => `${(v * 100).toFixed(digits)}%`;

/** The checks, in the order they are judged (the first a field fails is its refusal). */
const CHECKS = [
  {
    name: 'tissue',
    code: 'ERR_BACKGROUND',
    measures: 'share of the image that is tissue, not empty glass (bright and colourless)',
    bound: 'min',
    field: 0.25,
    tile: null,
    format: percent(0),
    message: (subject, value, limit) =>
      `${subject} is mostly empty (${value} tissue; at least ${limit} is needed): not a tissue field this model can judge`,
    measure: (px) => px.tissue.tissueFraction,
  },
  {
    name: 'stain',
    code: 'ERR_NOT_HE',
    // Measured: every one of the 322 development and full-resolution images has at least 0.33 (the
    // palest CLL fields); scikit-image's sample photographs at most 0.22 (a colour wheel; the
    // astronaut 0.18, the cat 0.01, IHC 0.01).
    measures: "share of the tissue with H&E's colour (green the darkest channel)",
    bound: 'min',
    field: 0.27,
    tile: null,
    format: percent(0),
    message: (subject, value, limit) =>
      `${subject} does not look like an H&E-stained section (${value} of it has H&E colours; at least ${limit} is needed): a photograph, another stain, or a pen-marked field?`,
    measure: (px) => px.tissue.stainFraction,
  },
  {
    name: 'ink',
    code: 'ERR_PEN_MARK',
    // Measured: the development images at most 0.076 (0.3x), 0.024 (full resolution), 0.050 (half
    // resolution); a blue or green stroke over a fifth of a field, 0.2. On slides, ink is outside
    // the tissue mask already.
    measures: 'share of the image that is blue or green pen ink (strongly coloured without H&E colour)',
    bound: 'max',
    field: 0.15,
    tile: null,
    format: percent(0),
    message: (subject, value, limit) =>
      `${subject} is marked with pen ink (${value} of it is blue or green ink; at most ${limit} is accepted): use a field without marks`,
    measure: (px) => px.tissue.inkFraction,
  },
  {
    name: 'blackInk',
    code: 'ERR_PEN_MARK',
    // A stroke over a tenth of the field (coloured ink is refused from 15% of it). Measured: the
    // development images at most 0.0046 (0.3x), 0.0011 (full resolution), 0.0001 (half
    // resolution); a black stroke over a fifth of a field, 0.2.
    measures: 'share of the image in its largest connected patch of near-black, colourless ink',
    bound: 'max',
    field: 0.1,
    tile: null,
    format: percent(1),
    message: (subject, value, limit) =>
      `${subject} is marked with black ink (one patch over ${value} of it; at most ${limit} is accepted): use a field without marks`,
    measure: (px) => px.artefacts.blackInkFraction,
  },
  {
    name: 'fold',
    code: 'ERR_TISSUE_FOLD',
    // A field: its 16 px tissue blocks against its median block. Measured: the development images
    // at most 0.012 (0.3x), 0.000 (full and half resolution); a fold over a tenth of a field (its
    // band's transmittance squared), 0.083 to 0.099. A tile is one block against the slide's
    // median tile: all fold (1) or none (0).
    measures:
      "share of the tissue about twice as dense as the rest (a field: of its blocks, against its median block; a tile: 1 when it is, against the slide's median tile)",
    bound: 'max',
    field: 0.05,
    tile: 0.5,
    format: percent(1),
    message: (subject, value, limit) =>
      `${subject} shows a tissue fold (${value} of its tissue is about twice as dense as the rest; at most ${limit} is accepted): use a field without folds`,
    measure: (px) => px.artefacts.foldFraction,
    tileMeasure: (px) => tissueDensity(px.judged),
    overSlide: (densities) => densityRatios(densities).map((r) => (isFolded(r) ? 1 : 0)),
  },
  {
    name: 'bubble',
    code: 'ERR_BUBBLE',
    // Measured: no development image has a rim at all (0); a bubble 50 px across at the reference
    // scale (about 53 um), 0.021. Not on slides: a tile is smaller than a bubble, the overview too
    // coarse for its rim.
    measures: 'share of the image inside the largest air-bubble rim (a thin, dark, colourless ring)',
    bound: 'max',
    field: 0.01,
    tile: null,
    format: percent(1),
    message: (subject, value, limit) =>
      `${subject} has an air bubble under the coverslip over ${value} of it (at most ${limit} is accepted): use a field without bubbles`,
    measure: (px) => px.artefacts.bubbleFraction,
  },
  {
    name: 'patches',
    code: 'ERR_NO_PATCHES',
    measures: "tissue patches the image yields on the model's grid",
    bound: 'min',
    field: 1,
    tile: null,
    format: (v) => String(v),
    message: (subject) => `${subject} yields no tissue patches at this model's patch size and scale`,
    measure: (px) => px.patches,
  },
  {
    name: 'focus',
    code: 'ERR_BLURRED',
    // The variance of the Laplacian of the haematoxylin channel (focus.ts). A field: the sharpest
    // blurred copy measured (a full-resolution field blurred with sigma 8, 0.0017; sigma 4 reaches
    // 0.021) against the least sharp real image (the 295 at 0.3x: 0.026; the full- and
    // half-resolution samples: 0.042 and 0.045). A tile (a patch of the model's grid): of the
    // 34,506 tissue tiles (32 px at 0.3x) of the development images the least sharp measures
    // 0.0071; copies blurred with sigma 2.5 at 0.3x reach 0.0012 at most, sigma 1.5 0.0101.
    measures: 'variance of the Laplacian of the haematoxylin channel at the judging scale (sharpness)',
    bound: 'min',
    field: 0.01,
    tile: 0.005,
    format: (v) => v.toFixed(4),
    message: (subject, value, limit) =>
      `${subject} is out of focus (focus ${value}; at least ${limit} is needed): rescan or refocus it`,
    measure: (px) => focusMeasure(px.judged),
  },
] as const satisfies readonly InputCheck[];

export type CheckName = (typeof CHECKS)[number]['name'];

/** Every check's measure of one image or tile, by check name. */
export type Assessment = Record<CheckName, number>;

/** A row of the table. */
export type Check = InputCheck & { name: CheckName };

export const INPUT_CHECKS: readonly Check[] = CHECKS;

/** The row of a check. */
export function inputCheck(name: CheckName): Check {
  const check = INPUT_CHECKS.find((c) => c.name === name);
  if (!check) throw new RangeError(`no input check '${name}'`);
  return check;
}

/** The checks a slide's tiles are judged by (a tile limit), in the table's order. */
export const TILE_CHECKS = INPUT_CHECKS.filter((c) => c.tile !== null);

/** Every check's measure of the pixels, taken once. */
export function assess(pixels: JudgedPixels): Assessment {
  return Object.fromEntries(INPUT_CHECKS.map((c) => [c.name, c.measure(pixels)])) as Assessment;
}

/** A tile check's measure of one tile (before `overSlide`). */
export function measureTile(check: InputCheck, pixels: JudgedPixels): number {
  return (check.tileMeasure ?? check.measure)(pixels);
}

/** The check's limit for what is judged (null: not judged by it). */
function limitOf(check: InputCheck, judged: Judged): number | null {
  return judged === 'field' ? check.field : check.tile;
}

/** Whether a value fails the check's limit for what is judged. */
function fails(check: InputCheck, value: number, judged: Judged): boolean {
  const limit = limitOf(check, judged);
  if (limit === null) return false;
  return check.bound === 'min' ? value < limit : value > limit;
}

/** The checks an assessment fails, in the table's order (a measure absent is not judged). */
export function failedChecks(assessment: Partial<Assessment>, judged: Judged): Check[] {
  return INPUT_CHECKS.filter((c) => {
    const value = assessment[c.name];
    return value !== undefined && fails(c, value, judged);
  });
}

/** The refusal of `subject` by a check, its value as measured, in the check's one message. */
export function refusal(check: InputCheck, subject: string, value: number, judged: Judged): PathotypeError {
  const limit = limitOf(check, judged) ?? check.field;
  return new PathotypeError(check.code, check.message(subject, check.format(value), check.format(limit)));
}

/** Throws the refusal of the first check a field image fails. */
export function refuseFailedField(assessment: Assessment, subject: string): void {
  const [failed] = failedChecks(assessment, 'field');
  if (failed) throw refusal(failed, subject, assessment[failed.name], 'field');
}

/** The table as plain data (no functions): for the README, the ONNX sidecar, a quality summary. */
export function checkList(): {
  name: CheckName;
  code: ErrorCode;
  measures: string;
  bound: 'min' | 'max';
  field: number;
  tile: number | null;
}[] {
  return INPUT_CHECKS.map(({ name, code, measures, bound, field, tile }) => ({
    name,
    code,
    measures,
    bound,
    field,
    tile,
  }));
}
