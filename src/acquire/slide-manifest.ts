/**
 * Slide manifests: a CSV of slide, patient, label (and optionally mpp, fold, annotations), the
 * form CLAM and Slideflow users already keep. Every row is checked before anything is written,
 * and every bad row is named in one error, so a manifest is fixed in one pass and the catalog
 * never holds half of one.
 */
import { existsSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { readAnnotations } from '../slide/annotations.js';
import { Slide } from '../slide/slide.js';
import type { Catalog, SlideRecord } from './catalog.js';

/** Whether a `--data` source is a slide manifest (a CSV), not a field collection. */
export function isSlideManifest(source: string): boolean {
  return /\.csv$/i.test(source);
}

export const MANIFEST_COLUMNS = ['slide', 'patient', 'label'] as const;
export const OPTIONAL_MANIFEST_COLUMNS = ['mpp', 'fold', 'annotations'] as const;

/** A manifest row checked, before the catalog gives it an id. */
export type SlideEntry = Omit<SlideRecord, 'id' | 'source' | 'importedAt'>;

/** RFC 4180 records: quoted cells may hold commas, doubled quotes and line breaks. */
export function parseCsv(text: string): string[][] {
  const records: string[][] = [];
  let record: string[] = [];
  let cell = '';
  let quoted = false;
  const endCell = (): void => {
    record.push(cell);
    cell = '';
  };
  const endRecord = (): void => {
    endCell();
    records.push(record);
    record = [];
  };
  for (let i = 0; i < text.length; i++) {
    const c = text[i] as string;
    if (quoted) {
      if (c === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (c === '"') quoted = false;
      else cell += c;
    } else if (c === '"' && cell === '') quoted = true;
    else if (c === ',') endCell();
    else if (c === '\n' || c === '\r') {
      if (c === '\r' && text[i + 1] === '\n') i++;
      endRecord();
    } else cell += c;
  }
  if (quoted) throw new PathotypeError('ERR_MANIFEST', 'the manifest ends inside a quoted cell');
  if (cell !== '' || record.length > 0) endRecord();
  return records.filter((r) => r.some((v) => v.trim() !== ''));
}

interface RawRow {
  /** Line of the record in the file, 1-based, the header being line 1 (what an editor shows). */
  line: number;
  cells: Record<string, string>;
}

function rowsOf(file: string): RawRow[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8').replace(/^\uFEFF/, '');
  } catch (cause) {
    throw new PathotypeError('ERR_MANIFEST', `cannot read the manifest ${file}: ${String(cause)}`, { cause });
  }
  const [header, ...records] = parseCsv(text);
  if (!header) throw new PathotypeError('ERR_MANIFEST', `the manifest ${file} is empty`);
  const columns = header.map((h) => h.trim().toLowerCase());
  const missing = MANIFEST_COLUMNS.filter((c) => !columns.includes(c));
  if (missing.length > 0)
    throw new PathotypeError(
      'ERR_MANIFEST',
      `the manifest ${file} lacks the column(s) ${missing.join(', ')} (it needs ${MANIFEST_COLUMNS.join(', ')}; ` +
        `optional: ${OPTIONAL_MANIFEST_COLUMNS.join(', ')})`,
    );
  if (records.length === 0)
    throw new PathotypeError('ERR_MANIFEST', `the manifest ${file} has no slide rows`);
  return records.map((r, i) => ({
    line: i + 2,
    cells: Object.fromEntries(columns.map((c, j) => [c, (r[j] ?? '').trim()])),
  }));
}

function optionalNumber(value: string | undefined, what: string, integer: boolean): number | null | string {
  if (value === undefined || value === '') return null;
  const n = Number(value);
  if (integer ? !Number.isInteger(n) || n < 0 : !Number.isFinite(n) || n <= 0)
    return `${what} '${value}' is not ${integer ? 'a non-negative integer' : 'a positive number'}`;
  return n;
}

/** One row's own checks (the file, its numbers); the checks across rows come after. */
async function checkRow(
  row: RawRow,
  dir: string,
  classes: readonly string[] | null,
): Promise<SlideEntry | string> {
  const { slide, patient, label } = row.cells as Record<(typeof MANIFEST_COLUMNS)[number], string>;
  if (!slide) return 'no slide path';
  if (!patient) return 'no patient';
  if (!label) return 'no label';
  if (classes && !classes.includes(label))
    return `label '${label}' is not one of the classes ${classes.join(', ')}`;
  const mpp = optionalNumber(row.cells.mpp, 'mpp', false);
  if (typeof mpp === 'string') return mpp;
  const fold = optionalNumber(row.cells.fold, 'fold', true);
  if (typeof fold === 'string') return fold;
  const annotations = row.cells.annotations ? path.resolve(dir, row.cells.annotations) : null;
  if (annotations && !existsSync(annotations)) return `annotations ${annotations} do not exist`;
  if (annotations)
    try {
      readAnnotations(annotations);
    } catch (error) {
      return error instanceof Error ? error.message : String(error);
    }
  const file = path.resolve(dir, slide);
  if (!existsSync(file)) return `slide ${file} does not exist`;
  let opened: Slide;
  try {
    opened = await Slide.open(file);
  } catch (error) {
    return `slide ${file} cannot be read: ${error instanceof Error ? error.message : String(error)}`;
  }
  const { info } = opened;
  await opened.close();
  const known = mpp ?? info.mpp;
  if (known === null) return `slide ${file} does not state its microns per pixel: give them in an mpp column`;
  return {
    path: realpathSync(file),
    patient,
    label,
    mpp: known,
    width: info.width,
    height: info.height,
    vendor: info.vendor,
    fold,
    annotations,
  };
}

/**
 * Reads and checks a manifest: every row's slide opens with a known scale, its label is one of
 * `classes` (when given), no slide is listed twice and no patient has two labels (in the
 * manifest, or against the slides `catalog` already holds). Throws ERR_MANIFEST naming each bad row.
 */
export async function readSlideManifest(
  file: string,
  options: { classes?: readonly string[]; catalog?: Catalog } = {},
): Promise<SlideEntry[]> {
  const rows = rowsOf(file);
  const dir = path.dirname(path.resolve(file));
  const problems: string[] = [];
  const entries: SlideEntry[] = [];
  const firstLine = new Map<string, number>();
  const labels = new Map<string, { label: string; where: string }>();
  for (const s of options.catalog?.slides() ?? [])
    labels.set(s.patient, { label: s.label, where: `the catalog's slide ${s.path}` });
  for (const row of rows) {
    const checked = await checkRow(row, dir, options.classes ?? null);
    if (typeof checked === 'string') {
      problems.push(`line ${row.line}: ${checked}`);
      continue;
    }
    const before = firstLine.get(checked.path);
    if (before !== undefined)
      problems.push(`line ${row.line}: slide ${checked.path} is already on line ${before}`);
    else firstLine.set(checked.path, row.line);
    const known = labels.get(checked.patient);
    if (known && known.label !== checked.label)
      problems.push(
        `line ${row.line}: patient ${checked.patient} is labelled ${checked.label} here and ${known.label} on ${known.where}`,
      );
    else if (!known) labels.set(checked.patient, { label: checked.label, where: `line ${row.line}` });
    entries.push(checked);
  }
  if (problems.length > 0)
    throw new PathotypeError(
      'ERR_MANIFEST',
      `the manifest ${file} has ${problems.length} problem(s); nothing was imported:\n  ${problems.join('\n  ')}`,
    );
  return entries;
}

export interface SlideImportReport {
  manifest: string;
  added: number;
  updated: number;
  slides: number;
  patients: number;
  perClass: Record<string, number>;
}

/** Checks a manifest whole, then records its slides in one transaction (all of them or none). */
export async function importSlideManifest(
  catalog: Catalog,
  file: string,
  options: { classes?: readonly string[] } = {},
): Promise<SlideImportReport> {
  const entries = await readSlideManifest(file, { ...options, catalog });
  const manifest = path.resolve(file);
  let added = 0;
  catalog.transaction(() => {
    for (const e of entries) if (catalog.upsertSlide({ ...e, source: manifest })) added++;
    catalog.record('import-slides', { manifest, slides: entries.length });
  });
  const perClass: Record<string, number> = {};
  for (const e of entries) perClass[e.label] = (perClass[e.label] ?? 0) + 1;
  return {
    manifest,
    added,
    updated: entries.length - added,
    slides: entries.length,
    patients: new Set(entries.map((e) => e.patient)).size,
    perClass,
  };
}
