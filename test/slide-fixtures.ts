/**
 * Test slides built from the shared development images: a mosaic of 0.3x fields (and blank
 * glass) written as a tiled pyramidal TIFF with libvips (through sharp), with its microns per
 * pixel in the TIFF resolution tags, as a scanner's generic TIFF export carries them.
 */
import { copyFileSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { deflateSync } from 'node:zlib';

import { Catalog } from '../src/acquire/catalog.js';
import { parseGroupRule } from '../src/acquire/grouping.js';
import { importImages } from '../src/acquire/import.js';
import { writeMosaicSlide } from '../src/acquire/slide-mosaic.js';
import { workspaceAt, type Workspace } from '../src/workspace.js';
import { tempDir } from './fixtures.js';
import { lymphomaDir } from './helpers.js';

export { MPP_03X } from '../src/acquire/slide-mosaic.js';
export type { MosaicSlide as TestSlide } from '../src/acquire/slide-mosaic.js';

/** Fields of one class of the development set, sorted, `count` of them. */
export function fieldsOf(className: string, count: number): string[] {
  const dir = path.join(lymphomaDir, className);
  return readdirSync(dir)
    .filter((f) => f.endsWith('.png'))
    .sort()
    .slice(0, count)
    .map((f) => path.join(dir, f));
}

/** A fresh workspace whose catalog holds `perClass` fields of each class, grouped by patient. */
export async function fieldCatalog(perClass: number): Promise<{ catalog: Catalog; workspace: Workspace }> {
  const images = tempDir();
  for (const c of ['CLL', 'FL', 'MCL']) {
    mkdirSync(path.join(images, c));
    for (const file of fieldsOf(c, perClass)) copyFileSync(file, path.join(images, c, path.basename(file)));
  }
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, images, { groupBy: parseGroupRule('sj') });
  return { catalog, workspace };
}

/** A mosaic of 417x312 cells, `across` per row, written as a tiled pyramid (src/acquire/slide-mosaic.ts). */
export const writeTestSlide = writeMosaicSlide;

/**
 * A tiled TIFF that declares `width` x `height` pixels (and `levels` halvings below it) yet is
 * small on disk: every tile of every level points at the same deflated tile of one colour. The
 * hostile slide of the bounds tests; OpenSlide reads it as a generic tiled TIFF.
 */
export function writeDeclaredHugeTiff(
  file: string,
  width: number,
  height: number,
  options: { levels?: number; mpp?: number } = {},
): void {
  const tile = 256;
  const data = deflateSync(Buffer.alloc(tile * tile * 3, 200));
  const levels = options.levels ?? 1;
  const mpp = options.mpp ?? 0.25;
  const chunks: Buffer[] = [];
  let offset = 8;
  const push = (b: Buffer): number => {
    const at = offset;
    chunks.push(b);
    offset += b.length + (b.length % 2);
    if (b.length % 2) chunks.push(Buffer.alloc(1));
    return at;
  };
  const dataAt = push(data);
  const ifds: { at: number; entries: Buffer; extra: Buffer[] }[] = [];
  const ifdOffsets: number[] = [];
  const layouts: {
    count: number;
    offsetsAt: number;
    countsAt: number;
    w: number;
    h: number;
    bpsAt: number;
    resAt: number;
  }[] = [];
  for (let level = 0; level < levels; level++) {
    const w = Math.max(1, Math.ceil(width / 2 ** level));
    const h = Math.max(1, Math.ceil(height / 2 ** level));
    const count = Math.ceil(w / tile) * Math.ceil(h / tile);
    const offsets = Buffer.alloc(count * 4);
    for (let i = 0; i < count; i++) offsets.writeUInt32LE(dataAt, i * 4);
    const counts = Buffer.alloc(count * 2);
    for (let i = 0; i < count; i++) counts.writeUInt16LE(data.length, i * 2);
    const bps = Buffer.from([8, 0, 8, 0, 8, 0]);
    const res = Buffer.alloc(8);
    res.writeUInt32LE(Math.round(10_000 / mpp), 0);
    res.writeUInt32LE(1, 4);
    layouts.push({
      count,
      offsetsAt: push(offsets),
      countsAt: push(counts),
      w,
      h,
      bpsAt: push(bps),
      resAt: push(res),
    });
  }
  for (const [level, l] of layouts.entries()) {
    const entries: [number, number, number, number][] = [
      [254, 4, 1, level === 0 ? 0 : 1], // NewSubfileType: reduced-resolution levels
      [256, 4, 1, l.w],
      [257, 4, 1, l.h],
      [258, 3, 3, l.bpsAt],
      [259, 3, 1, 8], // deflate
      [262, 3, 1, 2], // RGB
      [277, 3, 1, 3],
      [282, 5, 1, l.resAt],
      [283, 5, 1, l.resAt],
      [284, 3, 1, 1],
      [296, 3, 1, 3], // centimetres
      [322, 3, 1, tile],
      [323, 3, 1, tile],
      [324, 4, l.count, l.count === 1 ? dataAt : l.offsetsAt],
      [325, 3, l.count, l.countsAt],
    ];
    const ifd = Buffer.alloc(2 + entries.length * 12 + 4);
    ifd.writeUInt16LE(entries.length, 0);
    entries.forEach(([tag, type, count, value], i) => {
      const at = 2 + i * 12;
      ifd.writeUInt16LE(tag, at);
      ifd.writeUInt16LE(type, at + 2);
      ifd.writeUInt32LE(count, at + 4);
      if (type === 3 && count === 1) ifd.writeUInt16LE(value, at + 8);
      else if (tag === 325 && count <= 2) ifd.writeUInt16LE(data.length, at + 8);
      else ifd.writeUInt32LE(value, at + 8);
    });
    ifds.push({ at: 0, entries: ifd, extra: [] });
    ifdOffsets.push(push(ifd));
  }
  // Each IFD links to the next.
  for (let i = 0; i < ifds.length - 1; i++) {
    const ifd = ifds[i]?.entries as Buffer;
    ifd.writeUInt32LE(ifdOffsets[i + 1] ?? 0, ifd.length - 4);
  }
  const header = Buffer.alloc(8);
  header.write('II', 0, 'latin1');
  header.writeUInt16LE(42, 2);
  header.writeUInt32LE(ifdOffsets[0] ?? 0, 4);
  writeFileSync(file, Buffer.concat([header, ...chunks]));
}
