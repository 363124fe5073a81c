/**
 * Slide bags: each slide's tissue tiles, cut on the predictor's own grid at the recipe's microns
 * per pixel by the code prediction uses (predict/slide-tiles.ts, slide-regions.ts), judged by
 * the same tile checks (predict/slide-quality.ts), run once through the frozen base or ONNX
 * encoder, and cached per slide and encoder with their coordinates in CLAM's layout
 * (slide-bag-file.ts): workspace/features/<encoder key>/slides/<slide>-<key>.h5.
 *
 * Resumable per slide: a bag is written under a temporary name and renamed once whole, so a
 * killed run loses at most the slide it was on, and a bag already there is not extracted again.
 * Memory is one region: features are appended to the file as they come; the tiles the checks
 * refuse are dropped when the measured bag is copied to its final name (the fold check judges a
 * tile against the slide's median tile, so only a finished slide can be judged).
 */
import { createHash } from 'node:crypto';
import { appendFileSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import path from 'node:path';

import type { SlideRecord } from '../acquire/catalog.js';
import { PathotypeError } from '../errors.js';
import { checkList, TILE_CHECKS } from '../image/input-checks.js';
import { cutCells, prepareRegion, type PreprocessConfig } from '../image/preprocess.js';
import { MIN_TILE_TISSUE } from '../predict/slide-mask.js';
import { eachTileRegion, regionsOf } from '../predict/slide-regions.js';
import { slideInputMeasures, type InputMeasures } from '../predict/image-features.js';
import { judgeTiles, refusalCounts } from '../predict/slide-quality.js';
import { slideTiles, tileOrigin, type SlideTiles } from '../predict/slide-tiles.js';
import { isIgnored, readAnnotations, RegionIndex } from '../slide/annotations.js';
import { Slide } from '../slide/slide.js';
import { ensureDir, type Workspace } from '../workspace.js';
import { runFeatures, type ProbeFeatures } from './probe.js';
import { progressMeter, type SlideBagProgress } from './slide-bag-progress.js';
import {
  BagWriter,
  copyKeptRows,
  readBagMeta,
  readBagRows,
  writeBagHeader,
  type BagAttributes,
} from './slide-bag-file.js';

export type { SlideBagProgress } from './slide-bag-progress.js';

/** The bag layout's version: part of every slide's key, so a change of layout extracts again. */
const BAG_FORMAT = 2;

/** A slide with fewer usable tiles than this is left out of training, with its reason. */
export const MIN_USABLE_TILES = 16;

/** Per slide: what its tissue and tiles were, by the same checks prediction uses. */
export interface SlideQuality {
  /** Tissue area from the mask, in mm^2. */
  tissueMm2: number;
  /** Tissue tiles on the model's grid (the mask's). */
  tiles: number;
  /** Tiles that pass every tile check (and lie in an annotation, when given). */
  usable: number;
  /** By input-check name ('focus', 'fold', ...): tiles it refused. */
  refused: Record<string, number>;
  /** Tiles left out by the annotations: outside every region, or in an Ignore* one (0 without). */
  outsideAnnotations: number;
  /** Why the slide is left out of training (too little usable tissue), else null. */
  excluded: string | null;
}

/**
 * What a slide's atypicality and the drift page are measured from (predict/image-features.ts):
 * the mean of every tissue tile's features (refused ones too, as a prediction takes them) and the
 * slide's input measures. Null for a slide without tissue at the model's tile size, and for one
 * whose annotations leave tissue out (its tiles' mean would not be what a prediction takes).
 */
export interface SlideSignals {
  meanFeatures: number[];
  inputs: InputMeasures;
}

export interface SlideBag {
  /** The catalog's record (patient, label, fold, path, mpp). */
  slide: SlideRecord;
  /** The feature cache key of the base/encoder. */
  encoder: string;
  /** Microns per pixel the tiles were cut at. */
  mpp: number;
  /** A tile's side in level-0 pixels. */
  tileSize0: number;
  dims: number;
  /** Usable tiles. */
  count: number;
  /** count x dims, row-major; tiles in reading order (region by region). */
  features: Float32Array;
  /** count x 2: each tile's top-left corner in level-0 pixels. */
  coords: Int32Array;
  /** Per tile: index in `classes` of the annotated region's class, or -1 for the slide's own label. */
  regionLabels: Int16Array;
  quality: SlideQuality;
  signals: SlideSignals | null;
}

export interface SlideBagFile {
  slide: SlideRecord;
  file: string;
  quality: SlideQuality;
  signals: SlideSignals | null;
  count: number;
}

export interface SlideBagRequest {
  workspace: Workspace;
  slides: readonly SlideRecord[];
  classes: readonly string[];
  /** The recipe's normalisation, mpp and tiles, as packages keep it. */
  preprocess: PreprocessConfig;
  /** The frozen base or ONNX encoder (train/probe.ts). */
  features: ProbeFeatures;
  onProgress?: (p: SlideBagProgress) => void;
  signal?: AbortSignal;
  /** Default MIN_USABLE_TILES. */
  minUsableTiles?: number;
}

export interface SlideBagsResult {
  /** The slides kept for training, in the request's order. */
  bags: SlideBagFile[];
  excluded: { slide: SlideRecord; reason: string; quality: SlideQuality }[];
  /** Slides extracted by this call, and slides found already extracted. */
  extracted: number;
  cached: number;
}

/** What is kept in a bag's JSON attribute. */
interface BagMeta {
  format: number;
  slide: string;
  encoder: string;
  mpp: number;
  tileSize0: number;
  patchSize: number;
  classes: string[];
  quality: Omit<SlideQuality, 'excluded'>;
  signals: SlideSignals | null;
}

/** The folder of one encoder's slide bags. */
export function slideBagDir(workspace: Workspace, encoder: string): string {
  return path.join(workspace.featuresDir, encoder, 'slides');
}

/** Each slide's extraction, one JSON line per slide written: who extracted it, when, how many tiles. */
export const EXTRACTION_LOG = 'extractions.jsonl';

const sha1 = (data: string | Buffer): string => createHash('sha1').update(data).digest('hex');

/** A slide as the manifest names it: relative to the manifest's folder (a shared cache on another mount stays valid). */
export function slideName(slide: SlideRecord): string {
  return path.relative(path.dirname(slide.source), slide.path) || path.basename(slide.path);
}

/**
 * The slide's bag file: its name and a key that changes with the slide file, its annotations,
 * the classes their regions map to, the preprocessing and the tile checks.
 */
export function slideBagFile(
  dir: string,
  slide: SlideRecord,
  classes: readonly string[],
  preprocess: PreprocessConfig,
): string {
  if (!existsSync(slide.path))
    throw new PathotypeError('ERR_NOT_FOUND', `the catalog's slide ${slide.path} is not there any more`);
  const stat = statSync(slide.path);
  const annotations = slide.annotations ? sha1(readFileSync(slide.annotations)) : null;
  const key = sha1(
    JSON.stringify({
      format: BAG_FORMAT,
      slide: slideName(slide),
      size: stat.size,
      mtime: Math.floor(stat.mtimeMs),
      mpp: slide.mpp,
      annotations,
      classes: annotations ? classes : null,
      preprocess: { ...preprocess, mpp: undefined },
      checks: checkList().map((c) => [c.name, c.tile]),
      tissue: MIN_TILE_TISSUE,
    }),
  ).slice(0, 16);
  const stem = path
    .basename(slide.path)
    .replace(/\.[^.]*$/, '')
    .replace(/[^\w.-]/g, '_');
  return path.join(dir, `${stem}-${key}.h5`);
}

/** Why a slide is left out (too little usable tissue), or null. */
function exclusion(quality: Omit<SlideQuality, 'excluded'>, minimum: number): string | null {
  if (quality.usable >= minimum) return null;
  const refused = Object.entries(quality.refused)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n}`);
  const parts = [
    ...(refused.length > 0 ? [`refused by ${refused.join(', ')}`] : []),
    ...(quality.outsideAnnotations > 0 ? [`${quality.outsideAnnotations} outside the annotations`] : []),
  ];
  return (
    `${quality.usable} usable tiles of ${quality.tiles} tissue tiles (${quality.tissueMm2.toFixed(2)} mm^2 of tissue` +
    `${parts.length > 0 ? `; ${parts.join('; ')}` : ''}); at least ${minimum} are needed`
  );
}

/** The slide's tiles its annotations keep, and each one's region class (index in `classes`, -1 for the slide's label). */
function annotatedTiles(
  slide: SlideRecord,
  classes: readonly string[],
  tiles: SlideTiles,
): { kept: [number, number][]; labels: Int16Array; outside: number } {
  if (!slide.annotations)
    return { kept: tiles.kept, labels: new Int16Array(tiles.kept.length).fill(-1), outside: 0 };
  const regions = readAnnotations(slide.annotations);
  // A file of Ignore* regions alone leaves out what they cover and keeps the rest.
  const onlyIgnored = regions.every((r) => isIgnored(r.className));
  const index = new RegionIndex(regions);
  const half = tiles.size0 / 2;
  const kept: [number, number][] = [];
  const labels: number[] = [];
  for (const [col, row] of tiles.kept) {
    const [x, y] = tileOrigin(tiles.grid, col, row);
    const at = index.at(x + half, y + half);
    if (at.kind === 'ignored' || (at.kind === 'outside' && !onlyIgnored)) continue;
    kept.push([col, row]);
    labels.push(at.kind === 'region' && at.className !== null ? classes.indexOf(at.className) : -1);
  }
  return { kept, labels: Int16Array.from(labels), outside: tiles.kept.length - kept.length };
}

/** Removes what a killed run on this machine left of this slide's bag (its process is gone). */
function removeStaleParts(file: string): void {
  const dir = path.dirname(file);
  const prefix = `${path.basename(file)}.`;
  for (const name of readdirSync(dir)) {
    // `<bag>.<host>-<pid>.part|tmp`: the host may hold dots and dashes, the pid is the last number.
    const m = name.startsWith(prefix) ? /^(.+)-(\d+)\.(part|tmp)$/.exec(name.slice(prefix.length)) : null;
    if (!m || m[1] !== hostname()) continue;
    try {
      process.kill(Number(m[2]), 0);
    } catch (error) {
      // ESRCH: no such process (EPERM: alive, another user's).
      if ((error as NodeJS.ErrnoException).code === 'ESRCH') rmSync(path.join(dir, name), { force: true });
    }
  }
}

interface Extraction {
  request: SlideBagRequest;
  /** Called after each region with the tiles extracted of the slide so far, and its kept tiles. */
  onTiles: (done: number, total: number) => void;
}

/** Adds rows of features (back to back) into one sum per dimension. */
function addRows(sum: Float64Array, rows: Float32Array): void {
  for (let i = 0; i < rows.length; i++) sum[i % sum.length] = (sum[i % sum.length] ?? 0) + (rows[i] ?? 0);
}

/** What a bag's header says of its slide. */
type BagSummary = Pick<BagMeta, 'quality' | 'signals'>;

/** One slide's bag, extracted and judged, written whole under `file`; its quality (before exclusion) and signals. */
async function extractSlide(
  { request, onTiles }: Extraction,
  record: SlideRecord,
  file: string,
): Promise<BagSummary> {
  const { preprocess, features, classes, signal } = request;
  const own = `${hostname()}-${process.pid}`;
  const part = `${file}.${own}.part`;
  const tmp = `${file}.${own}.tmp`;
  removeStaleParts(file);
  const slide = await Slide.open(record.path);
  try {
    const area = (record.width * record.height * record.mpp * record.mpp) / 1e6;
    let tiles: SlideTiles;
    try {
      tiles = await slideTiles(slide, preprocess, { slideMpp: record.mpp, ...(signal ? { signal } : {}) });
    } catch (error) {
      if (!(error instanceof PathotypeError) || error.code !== 'ERR_BACKGROUND') throw error;
      const empty = {
        quality: { tissueMm2: 0, tiles: 0, usable: 0, refused: {}, outsideAnnotations: 0 },
        signals: null,
      };
      await writeEmptyBag(tmp, file, request, record, empty, 0);
      return empty;
    }
    const { kept, labels, outside } = annotatedTiles(record, classes, tiles);
    const measures = new Map<string, Float32Array>(
      TILE_CHECKS.map((c) => [c.name, new Float32Array(kept.length)]),
    );
    const featureSum = new Float64Array(features.dims);
    const writer = await BagWriter.create(part, features.dims);
    try {
      await eachTileRegion(
        preprocess,
        slide,
        tiles.grid,
        kept,
        [...regionsOf(kept)],
        signal,
        async (region, _key, members) => {
          const patches = cutCells(prepareRegion(region.region, preprocess), region.grid, region.cells);
          const rows = await runFeatures(
            features.runner,
            features.bf16 ?? false,
            features.dims,
            patches,
            members.length,
          );
          const coords = new Int32Array(members.length * 2);
          for (const [i, k] of members.entries()) {
            const [col, row] = kept[k] as [number, number];
            coords.set(tileOrigin(tiles.grid, col, row), i * 2);
          }
          for (const [name, values] of region.measures) measures.get(name)?.set(values, writer.count);
          addRows(featureSum, rows);
          writer.append({
            features: rows,
            coords,
            regionLabels: Int16Array.from(members, (k) => labels[k] ?? -1),
          });
          onTiles(writer.count, kept.length);
        },
      );
    } finally {
      writer.close();
    }
    const judged = judgeTiles(measures, kept.length);
    const keep = Uint8Array.from(judged, (t) => (t.failed.length === 0 ? 1 : 0));
    const quality = {
      tissueMm2: tiles.fraction * area,
      tiles: tiles.kept.length,
      usable: keep.reduce((a, b) => a + b, 0),
      refused: refusalCounts(judged),
      outsideAnnotations: outside,
    };
    // Every tissue tile, refused ones too: what a prediction averages. Annotations that leave
    // tissue out make another mean than a prediction's: such a slide keeps no signals.
    const signals =
      writer.count > 0 && outside === 0
        ? {
            meanFeatures: Array.from(featureSum, (v) => Number((v / writer.count).toPrecision(7))),
            inputs: slideInputMeasures(tiles.stain, measures.get('focus') ?? []),
          }
        : null;
    const { attributes, meta } = bagHeader(request, record, tiles.size0, { quality, signals });
    if (quality.usable === keep.length) {
      await writeBagHeader(part, attributes, meta);
      renameSync(part, file);
    } else {
      await copyKeptRows(part, tmp, keep, attributes, meta);
      renameSync(tmp, file);
    }
    return { quality, signals };
  } finally {
    rmSync(part, { force: true });
    rmSync(tmp, { force: true });
    await slide.close();
  }
}

function bagHeader(
  request: SlideBagRequest,
  record: SlideRecord,
  tileSize0: number,
  summary: BagSummary,
): { attributes: BagAttributes; meta: BagMeta } {
  const { preprocess, features, classes } = request;
  const mpp = record.mpp * (tileSize0 / preprocess.tiles.patchSize);
  const attributes = { patchSize: preprocess.tiles.patchSize, tileSize0, mpp, encoder: features.cacheKey };
  return {
    attributes,
    meta: { format: BAG_FORMAT, slide: slideName(record), ...attributes, classes: [...classes], ...summary },
  };
}

/** A slide without tissue at the model's tile size: an empty bag, so a rerun knows it and says why again. */
async function writeEmptyBag(
  tmp: string,
  file: string,
  request: SlideBagRequest,
  record: SlideRecord,
  summary: BagSummary,
  tileSize0: number,
): Promise<void> {
  const { attributes, meta } = bagHeader(request, record, tileSize0, summary);
  const writer = await BagWriter.create(tmp, request.features.dims);
  writer.close({ attributes, meta });
  renameSync(tmp, file);
}

/** A whole bag's quality and signals, or null when the file is not one (absent, or not written by this version). */
async function cachedSummary(file: string): Promise<BagSummary | null> {
  if (!existsSync(file)) return null;
  try {
    const meta = (await readBagMeta(file)) as BagMeta | null;
    return meta?.format === BAG_FORMAT ? { quality: meta.quality, signals: meta.signals } : null;
  } catch {
    return null;
  }
}

/**
 * Extracts (or finds cached) every slide's bag; resumable per slide; memory bounded. Slides with
 * fewer usable tiles than the minimum come back in `excluded` with the reason, never silently.
 */
export async function extractSlideBags(request: SlideBagRequest): Promise<SlideBagsResult> {
  const { workspace, slides, features, signal } = request;
  const minimum = request.minUsableTiles ?? MIN_USABLE_TILES;
  const dir = ensureDir(slideBagDir(workspace, features.cacheKey));
  const files = slides.map((s) => slideBagFile(dir, s, request.classes, request.preprocess));
  const result: SlideBagsResult = { bags: [], excluded: [], extracted: 0, cached: 0 };
  const progress = progressMeter(request.onProgress, slides);
  for (const [i, slide] of slides.entries()) {
    const file = files[i] as string;
    let summary = await cachedSummary(file);
    if (summary) result.cached++;
    else {
      const started = performance.now();
      summary = await extractSlide(
        { request, onTiles: (done, total) => progress.tiles(i, done, total) },
        slide,
        file,
      );
      result.extracted++;
      const { quality } = summary;
      appendFileSync(
        path.join(dir, EXTRACTION_LOG),
        `${JSON.stringify({ slide: slideName(slide), file: path.basename(file), tiles: quality.tiles, usable: quality.usable, seconds: (performance.now() - started) / 1000, host: hostname(), pid: process.pid, at: new Date().toISOString() })}\n`,
      );
    }
    const { quality, signals } = summary;
    const reason = exclusion(quality, minimum);
    const full = { ...quality, excluded: reason };
    if (reason) result.excluded.push({ slide, reason, quality: full });
    else result.bags.push({ slide, file, quality: full, signals, count: quality.usable });
    progress.slideDone(i);
    if (signal?.aborted) break;
  }
  return result;
}

/** A bag read whole: what training takes. */
export async function readSlideBag(file: SlideBagFile): Promise<SlideBag> {
  const rows = await readBagRows(file.file);
  const meta = rows.meta as BagMeta | null;
  if (meta?.format !== BAG_FORMAT)
    throw new PathotypeError(
      'ERR_TRAIN',
      `${file.file} is not a slide bag of this pathotype: extract it again`,
    );
  return {
    slide: file.slide,
    encoder: meta.encoder,
    mpp: meta.mpp,
    tileSize0: meta.tileSize0,
    dims: rows.dims,
    count: rows.regionLabels.length,
    features: rows.features,
    coords: rows.coords,
    regionLabels: rows.regionLabels,
    quality: file.quality,
    signals: file.signals,
  };
}
