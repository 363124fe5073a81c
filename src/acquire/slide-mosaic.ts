/**
 * Slides built from a class-per-folder field collection: per patient, a mosaic of its fields on
 * white glass written as a tiled pyramidal TIFF (libvips through sharp) whose resolution tags
 * carry the microns per pixel, as a scanner's generic TIFF export does. The collection holds no
 * real slides, so this is how slide-level training, tests and benches get slides whose every
 * tile is a known patient's tissue; no binary slide is kept in the repository.
 */
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { PathotypeError } from '../errors.js';
import { caseIdFor, type GroupRule } from './grouping.js';

/** The 0.3x copy's microns per pixel: the original release's 0.32 um over its 0.3005 scale. */
export const MPP_03X = 0.32 / 0.3005;

/** The glass between fields: a scanner's bright, faintly warm background. */
const GLASS = '#f4f4f2';

export interface MosaicSlide {
  file: string;
  width: number;
  height: number;
  mpp: number;
  /** The fields in the mosaic, row by row; null for a blank (glass) cell. */
  cells: (string | null)[];
  across: number;
}

export interface MosaicOptions {
  across: number;
  mpp?: number;
  /** Deflate keeps every pixel exact (a test compares regions with the fields); JPEG is what scanners use. */
  compression?: 'deflate' | 'jpeg';
  cellSize?: [number, number];
}

/** A mosaic of cells, `across` per row, written as a tiled pyramid with its resolution tags. */
export async function writeMosaicSlide(
  file: string,
  cells: (string | null)[],
  options: MosaicOptions = { across: 4 },
): Promise<MosaicSlide> {
  const [w, h] = options.cellSize ?? [417, 312];
  const glass = await sharp({ create: { width: w, height: h, channels: 3, background: GLASS } })
    .png()
    .toBuffer();
  const inputs = await Promise.all(
    cells.map(async (c) =>
      c ? sharp(c).resize(w, h, { fit: 'fill' }).removeAlpha().png().toBuffer() : glass,
    ),
  );
  const mpp = options.mpp ?? MPP_03X;
  await sharp(inputs, { join: { across: options.across }, limitInputPixels: false })
    .tiff({
      tile: true,
      pyramid: true,
      tileWidth: 256,
      tileHeight: 256,
      compression: options.compression ?? 'deflate',
      quality: 90,
      // sharp takes pixels per millimetre and writes them per centimetre
      xres: 1000 / mpp,
      yres: 1000 / mpp,
      resolutionUnit: 'cm',
    })
    .toFile(file);
  const meta = await sharp(file).metadata();
  return { file, width: meta.width ?? 0, height: meta.height ?? 0, mpp, cells, across: options.across };
}

export interface PatientSlidesOptions {
  groupBy: GroupRule;
  /** Fields a patient needs before its fields are dealt over two slides (alternately). */
  twoSlidesFrom?: number;
  /** At most this many fields per slide (small test slides); all of them by default. */
  maxFields?: number;
  /** Only these patients (tests); all by default. */
  patients?: readonly string[];
  mpp?: number;
  compression?: 'deflate' | 'jpeg';
  cellSize?: [number, number];
}

export interface PatientSlide {
  slide: string;
  patient: string;
  label: string;
  fields: number;
}

export const TWO_SLIDES_FROM = 4;

interface PatientFields {
  label: string;
  fields: string[];
}

function fieldsByPatient(source: string, rule: GroupRule): Map<string, PatientFields> {
  const patients = new Map<string, PatientFields>();
  let classes: string[];
  try {
    classes = readdirSync(source, { withFileTypes: true })
      .filter((d) => d.isDirectory())
      .map((d) => d.name)
      .sort();
  } catch (cause) {
    throw new PathotypeError('ERR_IMPORT', `cannot read the field collection ${source}: ${String(cause)}`, {
      cause,
    });
  }
  for (const label of classes) {
    const files = readdirSync(path.join(source, label))
      .filter((f) => /\.(png|tiff?|jpe?g)$/i.test(f))
      .sort();
    for (const f of files) {
      const patient = caseIdFor(rule, label, f);
      const entry = patients.get(patient) ?? { label, fields: [] };
      if (entry.label !== label)
        throw new PathotypeError(
          'ERR_IMPORT',
          `patient ${patient} has fields in ${entry.label} and ${label}`,
        );
      entry.fields.push(path.join(source, label, f));
      patients.set(patient, entry);
    }
  }
  if (patients.size === 0) throw new PathotypeError('ERR_IMPORT', `${source} holds no CLASS/field images`);
  return patients;
}

/** Cells in a near-square mosaic with a glass margin row and column, as tissue on a slide has. */
function mosaicCells(fields: readonly string[]): { cells: (string | null)[]; across: number } {
  const inner = Math.max(1, Math.ceil(Math.sqrt(fields.length)));
  const across = inner + 2;
  const rows = Math.ceil(fields.length / inner) + 2;
  const cells: (string | null)[] = Array.from({ length: across * rows }, () => null);
  fields.forEach((f, i) => {
    cells[(1 + Math.floor(i / inner)) * across + 1 + (i % inner)] = f;
  });
  return { cells, across };
}

/** CSV quoting for one cell: quotes only where a comma, quote or line break needs them. */
export function csvCell(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/**
 * One slide per patient (two, with alternate fields, where it has `twoSlidesFrom` or more), and
 * `manifest.csv` beside them (slide, patient, label, mpp; paths relative to the CSV).
 */
export async function writePatientSlides(
  source: string,
  outDir: string,
  options: PatientSlidesOptions,
): Promise<{ manifest: string; slides: PatientSlide[] }> {
  mkdirSync(outDir, { recursive: true });
  const twoFrom = options.twoSlidesFrom ?? TWO_SLIDES_FROM;
  const mpp = options.mpp ?? MPP_03X;
  const slides: PatientSlide[] = [];
  for (const [patient, { label, fields }] of fieldsByPatient(source, options.groupBy)) {
    if (options.patients && !options.patients.includes(patient)) continue;
    const groups =
      fields.length >= twoFrom ? [0, 1].map((k) => fields.filter((_, i) => i % 2 === k)) : [fields];
    for (const [k, group] of groups.entries()) {
      const chosen = options.maxFields ? group.slice(0, options.maxFields) : group;
      const name = `${patient.replace(/[^\w.-]/g, '_')}${groups.length > 1 ? `-${String.fromCharCode(97 + k)}` : ''}.tiff`;
      const { cells, across } = mosaicCells(chosen);
      await writeMosaicSlide(path.join(outDir, name), cells, {
        across,
        mpp,
        compression: options.compression ?? 'jpeg',
        ...(options.cellSize ? { cellSize: options.cellSize } : {}),
      });
      slides.push({ slide: name, patient, label, fields: chosen.length });
    }
  }
  const manifest = path.join(outDir, 'manifest.csv');
  const rows = slides.map((s) => [s.slide, s.patient, s.label, mpp.toFixed(6)].map(csvCell).join(','));
  writeFileSync(manifest, ['slide,patient,label,mpp', ...rows].join('\n') + '\n');
  return { manifest, slides };
}
