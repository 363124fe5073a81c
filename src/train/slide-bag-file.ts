/**
 * One slide's feature bag on disk, in CLAM's layout through h5wasm: datasets `features` [N, D]
 * float32, `coords` [N, 2] int32 (each tile's level-0 top-left corner) and `region_labels` [N]
 * int16, with plain attributes for other readers (`patch_size`, `tile_size0`, `mpp`, `encoder`)
 * and everything pathotype needs back as one JSON attribute (`pathotype`). The datasets are
 * chunked and grow as rows are appended, so a slide of any size is written with one region in
 * memory: h5wasm's Node build writes the file itself, not a copy in memory.
 */
import { File as H5File, Dataset, ready } from 'h5wasm/node';

import { PathotypeError } from '../errors.js';

/** Bytes per chunk of the features dataset: small enough to append a region at a time, large enough to read fast. */
const CHUNK_BYTES = 256 * 1024;
/**
 * Rows are held until this many bytes of features, then written in one call: each HDF5 write
 * costs milliseconds through wasm, a region's rows alone would make it a tenth of the extraction.
 */
const FLUSH_BYTES = 8 * 2 ** 20;
/** Rows copied at once when a bag is rewritten with the tiles it keeps. */
const COPY_ROWS = 4096;

/** The plain attributes a bag carries besides pathotype's own JSON. */
export interface BagAttributes {
  patchSize: number;
  tileSize0: number;
  mpp: number;
  encoder: string;
}

export interface BagRows {
  features: Float32Array;
  coords: Int32Array;
  regionLabels: Int16Array;
}

/** Writes the plain attributes and pathotype's JSON attribute. */
function writeAttributes(h5: H5File, attributes: BagAttributes, meta: unknown): void {
  h5.create_attribute('patch_size', attributes.patchSize, null, '<i');
  h5.create_attribute('tile_size0', attributes.tileSize0);
  h5.create_attribute('mpp', attributes.mpp);
  h5.create_attribute('encoder', attributes.encoder);
  h5.create_attribute('pathotype', JSON.stringify(meta));
}

/** Rows back to back. */
function concatRows(parts: readonly BagRows[], dims: number): BagRows {
  const n = parts.reduce((a, p) => a + p.regionLabels.length, 0);
  const out = {
    features: new Float32Array(n * dims),
    coords: new Int32Array(n * 2),
    regionLabels: new Int16Array(n),
  };
  let at = 0;
  for (const p of parts) {
    out.features.set(p.features, at * dims);
    out.coords.set(p.coords, at * 2);
    out.regionLabels.set(p.regionLabels, at);
    at += p.regionLabels.length;
  }
  return out;
}

/** Appends rows to a new bag file, FLUSH_BYTES at a time; `close` writes what is held, the attributes when given, and closes it. */
export class BagWriter {
  #written = 0;
  #pending: BagRows[] = [];
  #pendingRows = 0;
  readonly #flushRows: number;

  private constructor(
    readonly file: string,
    readonly dims: number,
    readonly h5: H5File,
    readonly sets: { features: Dataset; coords: Dataset; labels: Dataset },
  ) {
    this.#flushRows = Math.max(256, Math.floor(FLUSH_BYTES / (4 * Math.max(1, dims))));
  }

  static async create(file: string, dims: number): Promise<BagWriter> {
    await ready;
    const h5 = new H5File(file, 'w');
    const rows = Math.max(16, Math.floor(CHUNK_BYTES / (4 * Math.max(1, dims))));
    const growing = (name: string, data: Int16Array | Int32Array | Float32Array, width: number | null) =>
      h5.create_dataset({
        name,
        data,
        shape: width === null ? [0] : [0, width],
        maxshape: width === null ? [null] : [null, width],
        chunks: width === null ? [4096] : [width === dims ? rows : 4096, width],
      });
    const sets = {
      features: growing('features', new Float32Array(0), dims),
      coords: growing('coords', new Int32Array(0), 2),
      labels: growing('region_labels', new Int16Array(0), null),
    };
    return new BagWriter(file, dims, h5, sets);
  }

  get count(): number {
    return this.#written + this.#pendingRows;
  }

  append(rows: BagRows): void {
    if (rows.regionLabels.length === 0) return;
    this.#pending.push(rows);
    this.#pendingRows += rows.regionLabels.length;
    if (this.#pendingRows >= this.#flushRows) this.#flush();
  }

  #flush(): void {
    if (this.#pendingRows === 0) return;
    const rows =
      this.#pending.length === 1 ? (this.#pending[0] as BagRows) : concatRows(this.#pending, this.dims);
    const from = this.#written;
    const to = from + this.#pendingRows;
    this.sets.features.resize([to, this.dims]);
    this.sets.features.write_slice([[from, to], []], rows.features);
    this.sets.coords.resize([to, 2]);
    this.sets.coords.write_slice([[from, to], []], rows.coords);
    this.sets.labels.resize([to]);
    this.sets.labels.write_slice([[from, to]], rows.regionLabels);
    this.#written = to;
    this.#pending = [];
    this.#pendingRows = 0;
  }

  close(header?: { attributes: BagAttributes; meta: unknown }): void {
    try {
      this.#flush();
      if (header) writeAttributes(this.h5, header.attributes, header.meta);
    } finally {
      this.h5.close();
    }
  }
}

/** Writes a bag's attributes into a file of rows already whole (every row kept: nothing to copy). */
export async function writeBagHeader(file: string, attributes: BagAttributes, meta: unknown): Promise<void> {
  await ready;
  const h5 = new H5File(file, 'a');
  try {
    writeAttributes(h5, attributes, meta);
  } finally {
    h5.close();
  }
}

function openBag(file: string): H5File {
  try {
    return new H5File(file, 'r');
  } catch (cause) {
    throw new PathotypeError('ERR_TRAIN', `the feature bag ${file} cannot be read: ${String(cause)}`, {
      cause,
    });
  }
}

function datasetOf(h5: H5File, name: string): Dataset {
  const set = h5.get(name);
  if (!(set instanceof Dataset))
    throw new PathotypeError('ERR_TRAIN', `the feature bag ${h5.filename} has no '${name}'`);
  return set;
}

/** pathotype's JSON attribute of a bag (null when the file is not a whole bag). */
export async function readBagMeta(file: string): Promise<unknown> {
  await ready;
  const h5 = openBag(file);
  try {
    const value = h5.attrs.pathotype?.value;
    return typeof value === 'string' ? (JSON.parse(value) as unknown) : null;
  } finally {
    h5.close();
  }
}

/** Every row of a bag, and its JSON attribute. */
export async function readBagRows(file: string): Promise<BagRows & { meta: unknown; dims: number }> {
  await ready;
  const h5 = openBag(file);
  try {
    const features = datasetOf(h5, 'features');
    const [count = 0, dims = 0] = features.shape ?? [];
    const value = (set: Dataset): unknown => (count === 0 ? null : set.value);
    const f = value(features);
    const c = value(datasetOf(h5, 'coords'));
    const l = value(datasetOf(h5, 'region_labels'));
    const meta = h5.attrs.pathotype?.value;
    return {
      features: f instanceof Float32Array ? f : new Float32Array(0),
      coords: c instanceof Int32Array ? c : new Int32Array(0),
      regionLabels: l instanceof Int16Array ? l : new Int16Array(0),
      meta: typeof meta === 'string' ? (JSON.parse(meta) as unknown) : null,
      dims,
    };
  } finally {
    h5.close();
  }
}

/**
 * Copies the rows `keep` marks from the bag `from` into a new bag `to`, COPY_ROWS at a time, so a
 * slide's tiles are judged once all are measured yet never held in memory together.
 */
export async function copyKeptRows(
  from: string,
  to: string,
  keep: Uint8Array,
  attributes: BagAttributes,
  meta: unknown,
): Promise<number> {
  await ready;
  const source = openBag(from);
  try {
    const features = datasetOf(source, 'features');
    const coords = datasetOf(source, 'coords');
    const labels = datasetOf(source, 'region_labels');
    const [count = 0, dims = 0] = features.shape ?? [];
    const writer = await BagWriter.create(to, dims);
    try {
      for (let start = 0; start < count; start += COPY_ROWS) {
        const end = Math.min(count, start + COPY_ROWS);
        const f = features.slice([[start, end], []]) as Float32Array;
        const c = coords.slice([[start, end], []]) as Int32Array;
        const l = labels.slice([[start, end]]) as Int16Array;
        const rows: number[] = [];
        for (let i = start; i < end; i++) if (keep[i]) rows.push(i - start);
        const kept = {
          features: new Float32Array(rows.length * dims),
          coords: new Int32Array(rows.length * 2),
        };
        for (const [j, r] of rows.entries()) {
          kept.features.set(f.subarray(r * dims, (r + 1) * dims), j * dims);
          kept.coords.set(c.subarray(r * 2, r * 2 + 2), j * 2);
        }
        writer.append({ ...kept, regionLabels: Int16Array.from(rows, (r) => l[r] ?? -1) });
      }
    } finally {
      writer.close({ attributes, meta });
    }
    return writer.count;
  } finally {
    source.close();
  }
}
