/** Generated test data: H&E-like images, raw tar archives (hostile ones too), odd PNG headers. */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';

import sharp from 'sharp';

import { Catalog } from '../src/acquire/catalog.js';
import { parseGroupRule } from '../src/acquire/grouping.js';
import { importImages } from '../src/acquire/import.js';
import { prepare } from '../src/prepare/prepare.js';
import { createSplit } from '../src/acquire/split.js';
import { workspaceAt, type Workspace } from '../src/workspace.js';
import { makePatternSet } from '../src/engine/synthetic.js';
import { seededRandom } from '../src/random.js';

export function tempDir(prefix = 'pathotype-test-'): string {
  return mkdtempSync(path.join(tmpdir(), prefix));
}

// Optical densities of haematoxylin and eosin (Ruifrok & Johnston), unit length.
const H = [0.65, 0.7, 0.29];
const E = [0.07, 0.99, 0.11];

/** A synthetic H&E field: nuclei (haematoxylin) on eosin-stained stroma, with a tint per "case". */
export function heImage(
  width: number,
  height: number,
  seed: number,
  tint = 1,
): { data: Uint8Array; width: number; height: number } {
  const random = seededRandom(seed);
  const data = new Uint8Array(width * height * 3);
  const nuclei = Array.from({ length: Math.max(4, Math.floor((width * height) / 300)) }, () => [
    random() * width,
    random() * height,
    2 + random() * 4,
  ]);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let h = 0.25 + random() * 0.05;
      let e = (0.8 + random() * 0.4) * tint;
      for (const [cx = 0, cy = 0, r = 0] of nuclei) {
        if ((x - cx) ** 2 + (y - cy) ** 2 < r * r) {
          h = 1.2 + random() * 0.3;
          e *= 0.15; // nuclei take up little eosin
        }
      }
      for (let c = 0; c < 3; c++) {
        const od = (H[c] ?? 0) * h + (E[c] ?? 0) * e;
        data[(y * width + x) * 3 + c] = Math.max(0, Math.min(255, Math.round(240 * Math.exp(-od))));
      }
    }
  }
  return { data, width, height };
}

export async function writeImage(
  file: string,
  image: { data: Uint8Array; width: number; height: number },
  format: 'png' | 'tiff' | 'jpeg' = 'png',
): Promise<void> {
  mkdirSync(path.dirname(file), { recursive: true });
  const pipeline = sharp(Buffer.from(image.data), {
    raw: { width: image.width, height: image.height, channels: 3 },
  });
  await (
    format === 'png' ? pipeline.png() : format === 'tiff' ? pipeline.tiff() : pipeline.jpeg({ quality: 95 })
  ).toFile(file);
}

/** Class-per-folder images: `perClass` images per class, case names as given by `name`. */
export async function writeDataset(
  root: string,
  classes: readonly string[],
  perClass: number,
  name: (classIndex: number, i: number) => string,
  size = { width: 96, height: 72 },
): Promise<void> {
  for (const [k, className] of classes.entries()) {
    for (let i = 0; i < perClass; i++) {
      await writeImage(
        path.join(root, className, name(k, i)),
        heImage(size.width, size.height, k * 1000 + i, 0.6 + 0.4 * k),
      );
    }
  }
}

// ---------------------------------------------------------------- tar, by hand (hostile entries too)

export interface TarEntry {
  name: string;
  type?: 'file' | 'dir' | 'symlink' | 'hardlink';
  data?: Buffer;
  linkTarget?: string;
}

function octal(value: number, length: number): string {
  return value.toString(8).padStart(length - 1, '0') + '\0';
}

/** A ustar archive exactly as given: no path sanitising, so it can hold traversal and links. */
export function makeTar(entries: readonly TarEntry[], gzip = true): Buffer {
  const blocks: Buffer[] = [];
  for (const entry of entries) {
    const data = entry.data ?? Buffer.alloc(0);
    const header = Buffer.alloc(512);
    header.write(entry.name, 0, 100, 'utf8');
    header.write(octal(entry.type === 'dir' ? 0o755 : 0o644, 8), 100);
    header.write(octal(0, 8), 108);
    header.write(octal(0, 8), 116);
    header.write(octal(entry.type === 'file' || !entry.type ? data.length : 0, 12), 124);
    header.write(octal(Math.floor(Date.now() / 1000), 12), 136);
    header.write('        ', 148);
    const flag = { file: '0', dir: '5', symlink: '2', hardlink: '1' }[entry.type ?? 'file'];
    header.write(flag, 156);
    if (entry.linkTarget) header.write(entry.linkTarget, 157, 100);
    header.write('ustar\u000000', 257);
    let sum = 0;
    for (const byte of header) sum += byte;
    header.write(octal(sum, 7) + ' ', 148);
    blocks.push(header);
    if ((entry.type ?? 'file') === 'file') {
      blocks.push(data, Buffer.alloc((512 - (data.length % 512)) % 512));
    }
  }
  blocks.push(Buffer.alloc(1024));
  const tar = Buffer.concat(blocks);
  return gzip ? gzipSync(tar) : tar;
}

export function writeFile(file: string, data: Buffer | string): string {
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, data);
  return file;
}

// ---------------------------------------------------------------- PNG header of any size

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buffer: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buffer) c = (CRC_TABLE[(c ^ byte) & 0xff] ?? 0) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const length = Buffer.alloc(4);
  length.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([length, body, crc]);
}

/** A PNG whose header claims width x height but which holds almost no data: a decompression bomb's header. */
export function pngHeaderClaiming(width: number, height: number): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8;
  ihdr[9] = 2;
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', Buffer.from([0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01])),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}

/**
 * A learnable class-per-folder set: blobs, stripes and checkerboards (the engine's pattern set)
 * as PNGs, recoloured so that green is the darkest channel, as in H&E, for the predictor's
 * stain check to accept them: the shapes, not the colours, carry the classes.
 */
export async function writePatternDataset(root: string, perClass: number, size = 48): Promise<string[]> {
  const set = makePatternSet(perClass * 3, size, 21);
  for (let p = 0; p < set.images.length; p += 3) {
    const r = Math.max(24, set.images[p] ?? 0);
    const b = Math.max(24, set.images[p + 2] ?? 0);
    set.images[p] = r;
    set.images[p + 1] = Math.min(r, b) - 16;
    set.images[p + 2] = b;
  }
  const classes = ['BLOB', 'CHECKER', 'STRIPES'];
  const folder = ['BLOB', 'STRIPES', 'CHECKER'];
  const bytes = size * size * 3;
  for (let i = 0; i < set.count; i++) {
    const className = folder[set.labels[i] ?? 0] ?? 'BLOB';
    await writeImage(path.join(root, className, `${i}.png`), {
      data: set.images.slice(i * bytes, (i + 1) * bytes),
      width: size,
      height: size,
    });
  }
  return classes;
}

/**
 * A workspace holding the pattern set: imported (one case per image), split and prepared into
 * the patch store 'patterns' (24x24 patches, stride 12, no normalisation).
 */
export async function patternWorkspace(
  perClass: number,
  split: { testFraction: number; validationFraction: number; seed: number },
): Promise<{ workspace: Workspace; catalog: Catalog; root: string }> {
  const root = tempDir();
  await writePatternDataset(root, perClass);
  const workspace = workspaceAt(tempDir());
  const catalog = Catalog.open(workspace);
  await importImages(catalog, workspace, root, { groupBy: parseGroupRule('none') });
  createSplit(catalog, 'default', { kind: 'holdout', ...split });
  await prepare(catalog, workspace, {
    name: 'patterns',
    split: 'default',
    recipe: { normalisation: 'none', targetScale: null, patchSize: 24, stride: 12 },
  });
  return { workspace, catalog, root };
}
