/**
 * The patch store: every patch of a prepared dataset as uint8 HWC bytes in sharded files, and an
 * index (SQLite) of each patch's image, class, partition, fold and grid cell. Written into a
 * staging folder and renamed into place when complete, so a store is whole or absent. Read in
 * any order with memory bounded by the batch size.
 */
import { existsSync, readFileSync } from 'node:fs';
import { open, rename, rm, stat, readdir, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

import Database from 'better-sqlite3';

import { PathotypeError } from '../errors.js';
import type { Partition } from '../acquire/catalog.js';
import type { Assessment } from '../image/input-checks.js';
import type { PreprocessConfig } from '../image/preprocess.js';
import { ensureDir } from '../workspace.js';

/**
 * 2: the patch size lives only in preprocess.tiles. 3: each image's input-check measures
 * (`measures`: image/input-checks.ts). Stores of format 2 still open, their images unmeasured.
 */
export const PATCH_STORE_FORMAT = 3;
const READABLE_FORMATS: readonly number[] = [2, 3];

export interface PatchStoreManifest {
  format: number;
  name: string;
  channels: 3;
  count: number;
  shards: { file: string; count: number }[];
  classes: string[];
  split: string | null;
  preprocess: PreprocessConfig;
  /** SHA-1 over the images (content, class, case, partition) and the preprocessing. */
  fingerprint: string;
  images: number;
  createdAt: string;
}

export interface StoredImage {
  imageId: number;
  className: string;
  caseId: string;
  partition: Partition | null;
  fold: number | null;
  width: number;
  height: number;
  cols: number;
  rows: number;
  patches: number;
  total: number;
  /**
   * Every input check's measure of the image as prepare decoded it (tissue, stain and ink shares,
   * folds, bubbles, black ink, focus; input-checks.ts), by check name: what a quality summary of
   * the training data reads. Null in a store of format 2; a check added since the store was made
   * is absent.
   */
  measures: Partial<Assessment> | null;
}

export class PatchStoreError extends PathotypeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_PATCH_STORE', message, options);
    this.name = 'PatchStoreError';
  }
}

const INDEX_SCHEMA = `
CREATE TABLE patches (
  id INTEGER PRIMARY KEY,
  image_id INTEGER NOT NULL,
  class_index INTEGER NOT NULL,
  partition TEXT,
  fold INTEGER,
  col INTEGER NOT NULL,
  row INTEGER NOT NULL,
  shard INTEGER NOT NULL,
  slot INTEGER NOT NULL,
  background REAL NOT NULL
);
CREATE TABLE images (
  image_id INTEGER PRIMARY KEY,
  class TEXT NOT NULL,
  case_id TEXT NOT NULL,
  partition TEXT,
  fold INTEGER,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  cols INTEGER NOT NULL,
  rows INTEGER NOT NULL,
  patches INTEGER NOT NULL,
  total INTEGER NOT NULL,
  measures TEXT
);
`;

export interface PatchBatchInput {
  image: StoredImage;
  classIndex: number;
  patches: Uint8Array;
  cells: Int32Array;
  backgroundFractions: Float32Array;
}

/** Builds a store in `<dir>.partial`; `finish` moves it to `dir`. */
export class PatchStoreWriter {
  readonly dir: string;
  readonly staging: string;
  readonly patchBytes: number;
  readonly #shardCapacity: number;
  #db: Database.Database;
  #insertPatch: Database.Statement;
  #insertImage: Database.Statement;
  #shards: { file: string; count: number }[] = [];
  #handle: FileHandle | undefined;
  #count = 0;
  #images = 0;

  private constructor(
    dir: string,
    staging: string,
    patchSize: number,
    shardBytes: number,
    db: Database.Database,
  ) {
    this.dir = dir;
    this.staging = staging;
    this.patchBytes = patchSize * patchSize * 3;
    this.#shardCapacity = Math.max(1, Math.floor(shardBytes / this.patchBytes));
    this.#db = db;
    this.#insertPatch = db.prepare(
      'INSERT INTO patches (id, image_id, class_index, partition, fold, col, row, shard, slot, background) VALUES (?,?,?,?,?,?,?,?,?,?)',
    );
    this.#insertImage = db.prepare(
      'INSERT INTO images (image_id, class, case_id, partition, fold, width, height, cols, rows, patches, total, measures) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)',
    );
  }

  static async create(
    dir: string,
    patchSize: number,
    shardBytes = 256 * 1024 * 1024,
  ): Promise<PatchStoreWriter> {
    const staging = `${dir}.partial`;
    await rm(staging, { recursive: true, force: true });
    ensureDir(staging);
    const db = new Database(path.join(staging, 'index.sqlite'));
    db.pragma('journal_mode = OFF');
    db.pragma('synchronous = OFF');
    db.exec(INDEX_SCHEMA);
    db.exec('BEGIN');
    return new PatchStoreWriter(dir, staging, patchSize, shardBytes, db);
  }

  get count(): number {
    return this.#count;
  }

  async add(input: PatchBatchInput): Promise<void> {
    const n = input.backgroundFractions.length;
    if (input.patches.length !== n * this.patchBytes)
      throw new PatchStoreError('patch bytes do not match the patch count');
    const img = input.image;
    this.#insertImage.run(
      img.imageId,
      img.className,
      img.caseId,
      img.partition,
      img.fold,
      img.width,
      img.height,
      img.cols,
      img.rows,
      n,
      img.total,
      img.measures ? JSON.stringify(img.measures) : null,
    );
    this.#images++;
    let written = 0;
    while (written < n) {
      let shard = this.#shards[this.#shards.length - 1];
      if (!shard || shard.count >= this.#shardCapacity || !this.#handle) {
        await this.#handle?.close();
        shard = { file: `shard-${String(this.#shards.length).padStart(5, '0')}.bin`, count: 0 };
        this.#shards.push(shard);
        this.#handle = await open(path.join(this.staging, shard.file), 'w');
      }
      const take = Math.min(n - written, this.#shardCapacity - shard.count);
      await this.#handle.write(
        input.patches.subarray(written * this.patchBytes, (written + take) * this.patchBytes),
      );
      for (let i = 0; i < take; i++) {
        const k = written + i;
        this.#insertPatch.run(
          this.#count,
          img.imageId,
          input.classIndex,
          img.partition,
          img.fold,
          input.cells[k * 2],
          input.cells[k * 2 + 1],
          this.#shards.length - 1,
          shard.count + i,
          input.backgroundFractions[k],
        );
        this.#count++;
      }
      shard.count += take;
      written += take;
    }
  }

  async finish(
    manifest: Omit<PatchStoreManifest, 'format' | 'count' | 'shards' | 'images' | 'createdAt'>,
  ): Promise<PatchStoreManifest> {
    await this.#handle?.close();
    this.#handle = undefined;
    this.#db.exec('COMMIT');
    this.#db.close();
    const full: PatchStoreManifest = {
      format: PATCH_STORE_FORMAT,
      ...manifest,
      count: this.#count,
      shards: this.#shards,
      images: this.#images,
      createdAt: new Date().toISOString(),
    };
    await writeFile(path.join(this.staging, 'manifest.json'), `${JSON.stringify(full, null, 2)}\n`);
    await rm(this.dir, { recursive: true, force: true });
    await rename(this.staging, this.dir);
    return full;
  }

  async abort(): Promise<void> {
    await this.#handle?.close().catch(() => undefined);
    try {
      this.#db.close();
    } catch {
      // already closed
    }
    await rm(this.staging, { recursive: true, force: true });
  }
}

export interface PatchSelection {
  partitions?: readonly (Partition | null)[];
  folds?: readonly number[];
  imageIds?: readonly number[];
}

/** A finished store, read-only. */
export class PatchStore {
  readonly dir: string;
  readonly manifest: PatchStoreManifest;
  /** Patch side in pixels (the store's preprocess.tiles.patchSize). */
  readonly patchSize: number;
  readonly patchBytes: number;
  /** Per patch, by patch id. */
  readonly imageIds: Int32Array;
  readonly classIndices: Int32Array;
  readonly cols: Int32Array;
  readonly rows: Int32Array;
  readonly #shard: Int32Array;
  readonly #slot: Int32Array;
  readonly #partition: (Partition | null)[];
  readonly #fold: (number | null)[];
  readonly images: StoredImage[];
  #handles = new Map<number, Promise<FileHandle>>();

  private constructor(dir: string, manifest: PatchStoreManifest, db: Database.Database) {
    this.dir = dir;
    this.manifest = manifest;
    this.patchSize = manifest.preprocess.tiles.patchSize;
    this.patchBytes = this.patchSize ** 2 * 3;
    const rows = db.prepare('SELECT * FROM patches ORDER BY id').all() as {
      id: number;
      image_id: number;
      class_index: number;
      partition: Partition | null;
      fold: number | null;
      col: number;
      row: number;
      shard: number;
      slot: number;
    }[];
    const n = rows.length;
    this.imageIds = new Int32Array(n);
    this.classIndices = new Int32Array(n);
    this.cols = new Int32Array(n);
    this.rows = new Int32Array(n);
    this.#shard = new Int32Array(n);
    this.#slot = new Int32Array(n);
    this.#partition = new Array<Partition | null>(n);
    this.#fold = new Array<number | null>(n);
    for (const r of rows) {
      this.imageIds[r.id] = r.image_id;
      this.classIndices[r.id] = r.class_index;
      this.cols[r.id] = r.col;
      this.rows[r.id] = r.row;
      this.#shard[r.id] = r.shard;
      this.#slot[r.id] = r.slot;
      this.#partition[r.id] = r.partition;
      this.#fold[r.id] = r.fold;
    }
    // Format 2 has no measures column.
    const measures = manifest.format >= 3 ? 'measures' : 'NULL AS measures';
    this.images = (
      db
        .prepare(
          `SELECT image_id AS imageId, class AS className, case_id AS caseId, partition, fold, width, height, cols, rows,
           patches, total, ${measures} FROM images ORDER BY image_id`,
        )
        .all() as (Omit<StoredImage, 'measures'> & { measures: string | null })[]
    ).map((image) => ({
      ...image,
      measures: image.measures === null ? null : (JSON.parse(image.measures) as Partial<Assessment>),
    }));
  }

  static exists(dir: string): boolean {
    return existsSync(path.join(dir, 'manifest.json'));
  }

  static open(dir: string): PatchStore {
    const manifestPath = path.join(dir, 'manifest.json');
    if (!existsSync(manifestPath))
      throw new PatchStoreError(`no patch store at ${dir}: run pathotype prepare first`);
    let manifest: PatchStoreManifest;
    try {
      manifest = JSON.parse(readFileSync(manifestPath, 'utf8')) as PatchStoreManifest;
    } catch (cause) {
      throw new PatchStoreError(`the patch store manifest ${manifestPath} is unreadable: ${String(cause)}`, {
        cause,
      });
    }
    if (!READABLE_FORMATS.includes(manifest.format)) {
      throw new PatchStoreError(
        `the patch store at ${dir} has format ${manifest.format}, not ${READABLE_FORMATS.join(' or ')}: prepare it again`,
      );
    }
    const db = new Database(path.join(dir, 'index.sqlite'), { readonly: true, fileMustExist: true });
    try {
      return new PatchStore(dir, manifest, db);
    } finally {
      db.close();
    }
  }

  get count(): number {
    return this.imageIds.length;
  }

  #byImage: Map<number, number[]> | undefined;

  /** The patch ids of one image, ascending; indexed on first use instead of scanning every patch each time. */
  patchesOf(imageId: number): Int32Array {
    if (!this.#byImage) {
      this.#byImage = new Map();
      for (let id = 0; id < this.count; id++) {
        const image = this.imageIds[id] ?? -1;
        const list = this.#byImage.get(image);
        if (list) list.push(id);
        else this.#byImage.set(image, [id]);
      }
    }
    return Int32Array.from(this.#byImage.get(imageId) ?? []);
  }

  /** Patch ids matching the selection, ascending. */
  select(selection: PatchSelection = {}): Int32Array {
    const ids: number[] = [];
    const images = selection.imageIds ? new Set(selection.imageIds) : undefined;
    for (let id = 0; id < this.count; id++) {
      if (selection.partitions && !selection.partitions.includes(this.#partition[id] ?? null)) continue;
      if (selection.folds && !selection.folds.includes(this.#fold[id] ?? -1)) continue;
      if (images && !images.has(this.imageIds[id] ?? -1)) continue;
      ids.push(id);
    }
    return Int32Array.from(ids);
  }

  #handle(shard: number): Promise<FileHandle> {
    let handle = this.#handles.get(shard);
    if (!handle) {
      const file = this.manifest.shards[shard]?.file;
      if (!file) throw new PatchStoreError(`patch store shard ${shard} is missing from the manifest`);
      handle = open(path.join(this.dir, file), 'r');
      this.#handles.set(shard, handle);
    }
    return handle;
  }

  /** The patches with the given ids, back to back, in that order; with their class indices. */
  async read(ids: ArrayLike<number>): Promise<{ patches: Uint8Array; labels: Int32Array }> {
    const patches = new Uint8Array(ids.length * this.patchBytes);
    const labels = new Int32Array(ids.length);
    await Promise.all(
      Array.from({ length: ids.length }, async (_, i) => {
        const id = ids[i] ?? -1;
        if (!(id >= 0 && id < this.count))
          throw new PatchStoreError(`patch id ${id} is outside the store (0..${this.count - 1})`);
        const handle = await this.#handle(this.#shard[id] ?? 0);
        const { bytesRead } = await handle.read(
          patches,
          i * this.patchBytes,
          this.patchBytes,
          (this.#slot[id] ?? 0) * this.patchBytes,
        );
        if (bytesRead !== this.patchBytes)
          throw new PatchStoreError(`patch ${id} is truncated in ${this.dir}`);
        labels[i] = this.classIndices[id] ?? 0;
      }),
    );
    return { patches, labels };
  }

  async close(): Promise<void> {
    const handles = [...this.#handles.values()];
    this.#handles.clear();
    await Promise.all(handles.map(async (h) => (await h).close()));
  }

  async diskBytes(): Promise<number> {
    let total = 0;
    for (const file of await readdir(this.dir)) total += (await stat(path.join(this.dir, file))).size;
    return total;
  }
}
