/**
 * The catalog: what each image is (class, case, scale, checksum) and how it is split. SQLite in
 * WAL mode; every multi-row change runs in one transaction, so a killed process leaves either
 * all of a change or none of it.
 */
import Database from 'better-sqlite3';

import { PathotypeError } from '../errors.js';
import { ensureDir, type Workspace } from '../workspace.js';

/** How a split was made: one holdout, k folds, one fold per group, or everything for training. */
export type SplitKind = 'holdout' | 'kfold' | 'loo' | 'all';

export const CATALOG_SCHEMA_VERSION = 2;

export interface ImageRecord {
  id: number;
  path: string;
  fileName: string;
  className: string;
  caseId: string;
  sha1: string;
  width: number;
  height: number;
  channels: number;
  bitDepth: number;
  format: string;
  /** Pixel scale relative to the original 1388x1040 release (1 = original), when known. */
  scale: number | null;
  /** Micrometres per pixel, when known. */
  mpp: number | null;
  source: string;
  importedAt: string;
}

export type NewImage = Omit<ImageRecord, 'id' | 'importedAt'>;

/** A whole slide from a manifest: one patient's, with one label; its tiles are cut later. */
export interface SlideRecord {
  id: number;
  /** Absolute path of the slide (the manifest's paths are relative to the manifest). */
  path: string;
  patient: string;
  label: string;
  /** Microns per level-0 pixel: the manifest's, else the slide's own metadata. */
  mpp: number;
  width: number;
  height: number;
  vendor: string;
  /** The manifest's own fold, when it fixes the cross-validation. */
  fold: number | null;
  /** A GeoJSON of annotated regions (QuPath's export), when the manifest names one. */
  annotations: string | null;
  source: string;
  importedAt: string;
}

export type NewSlide = Omit<SlideRecord, 'id' | 'importedAt'>;

export type Partition = 'train' | 'validation' | 'test';

export interface SplitRecord {
  name: string;
  kind: SplitKind;
  seed: number;
  params: Record<string, unknown>;
  createdAt: string;
}

export interface SplitMember {
  imageId: number;
  partition: Partition | null;
  fold: number | null;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  file_name TEXT NOT NULL,
  class TEXT NOT NULL,
  case_id TEXT NOT NULL,
  sha1 TEXT NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  channels INTEGER NOT NULL,
  bit_depth INTEGER NOT NULL,
  format TEXT NOT NULL,
  scale REAL,
  mpp REAL,
  source TEXT NOT NULL,
  imported_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS images_sha1 ON images(sha1);
CREATE INDEX IF NOT EXISTS images_class ON images(class);
CREATE TABLE IF NOT EXISTS splits (
  name TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  seed INTEGER NOT NULL,
  params TEXT NOT NULL,
  created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS split_members (
  split TEXT NOT NULL REFERENCES splits(name) ON DELETE CASCADE,
  image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
  partition TEXT,
  fold INTEGER,
  PRIMARY KEY (split, image_id)
);
CREATE TABLE IF NOT EXISTS slides (
  id INTEGER PRIMARY KEY,
  path TEXT NOT NULL UNIQUE,
  patient TEXT NOT NULL,
  label TEXT NOT NULL,
  mpp REAL NOT NULL,
  width INTEGER NOT NULL,
  height INTEGER NOT NULL,
  vendor TEXT NOT NULL,
  fold INTEGER,
  annotations TEXT,
  source TEXT NOT NULL,
  imported_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS history (
  id INTEGER PRIMARY KEY,
  at TEXT NOT NULL,
  action TEXT NOT NULL,
  details TEXT NOT NULL
);
`;

interface ImageRow {
  id: number;
  path: string;
  file_name: string;
  class: string;
  case_id: string;
  sha1: string;
  width: number;
  height: number;
  channels: number;
  bit_depth: number;
  format: string;
  scale: number | null;
  mpp: number | null;
  source: string;
  imported_at: string;
}

function toImage(row: ImageRow): ImageRecord {
  return {
    id: row.id,
    path: row.path,
    fileName: row.file_name,
    className: row.class,
    caseId: row.case_id,
    sha1: row.sha1,
    width: row.width,
    height: row.height,
    channels: row.channels,
    bitDepth: row.bit_depth,
    format: row.format,
    scale: row.scale,
    mpp: row.mpp,
    source: row.source,
    importedAt: row.imported_at,
  };
}

export class Catalog {
  readonly db: Database.Database;

  private constructor(db: Database.Database) {
    this.db = db;
  }

  static open(workspace: Workspace): Catalog {
    ensureDir(workspace.root);
    let db: Database.Database;
    try {
      db = new Database(workspace.catalogPath);
      db.pragma('journal_mode = WAL');
      db.pragma('foreign_keys = ON');
      db.pragma('busy_timeout = 5000');
    } catch (cause) {
      throw new PathotypeError(
        'ERR_CATALOG',
        `cannot open the catalog ${workspace.catalogPath}: ${String(cause)}`,
        {
          cause,
        },
      );
    }
    const version = (() => {
      try {
        const row = db.prepare("SELECT value FROM meta WHERE key = 'schema_version'").get() as
          { value: string } | undefined;
        return row ? Number(row.value) : 0;
      } catch {
        return 0;
      }
    })();
    if (version > CATALOG_SCHEMA_VERSION) {
      db.close();
      throw new PathotypeError(
        'ERR_CATALOG_VERSION',
        `the catalog ${workspace.catalogPath} has schema ${version}, newer than this pathotype understands ` +
          `(${CATALOG_SCHEMA_VERSION}): upgrade pathotype or use another workspace`,
      );
    }
    db.exec(SCHEMA);
    db.prepare("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)").run(
      String(CATALOG_SCHEMA_VERSION),
    );
    return new Catalog(db);
  }

  close(): void {
    this.db.close();
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  record(action: string, details: Record<string, unknown>): void {
    this.db
      .prepare('INSERT INTO history (at, action, details) VALUES (?, ?, ?)')
      .run(new Date().toISOString(), action, JSON.stringify(details));
  }

  history(limit = 50): { at: string; action: string; details: Record<string, unknown> }[] {
    const rows = this.db
      .prepare('SELECT at, action, details FROM history ORDER BY id DESC LIMIT ?')
      .all(limit) as {
      at: string;
      action: string;
      details: string;
    }[];
    return rows.map((r) => ({
      at: r.at,
      action: r.action,
      details: JSON.parse(r.details) as Record<string, unknown>,
    }));
  }

  imageByPath(path: string): ImageRecord | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE path = ?').get(path) as ImageRow | undefined;
    return row ? toImage(row) : undefined;
  }

  imageBySha1(sha1: string): ImageRecord | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE sha1 = ? ORDER BY id LIMIT 1').get(sha1) as
      ImageRow | undefined;
    return row ? toImage(row) : undefined;
  }

  /** Inserts or, for a known path, updates an image; returns its id. */
  upsertImage(image: NewImage): number {
    const row = this.db
      .prepare(
        `INSERT INTO images (path, file_name, class, case_id, sha1, width, height, channels, bit_depth, format,
           scale, mpp, source, imported_at)
         VALUES (@path, @fileName, @className, @caseId, @sha1, @width, @height, @channels, @bitDepth, @format,
           @scale, @mpp, @source, @importedAt)
         ON CONFLICT(path) DO UPDATE SET file_name = excluded.file_name, class = excluded.class,
           case_id = excluded.case_id, sha1 = excluded.sha1, width = excluded.width, height = excluded.height,
           channels = excluded.channels, bit_depth = excluded.bit_depth, format = excluded.format,
           scale = excluded.scale, mpp = excluded.mpp, source = excluded.source
         RETURNING id`,
      )
      .get({ ...image, importedAt: new Date().toISOString() }) as { id: number };
    return row.id;
  }

  images(): ImageRecord[] {
    return (this.db.prepare('SELECT * FROM images ORDER BY class, id').all() as ImageRow[]).map(toImage);
  }

  image(id: number): ImageRecord | undefined {
    const row = this.db.prepare('SELECT * FROM images WHERE id = ?').get(id) as ImageRow | undefined;
    return row ? toImage(row) : undefined;
  }

  classes(): string[] {
    return (
      this.db.prepare('SELECT DISTINCT class FROM images ORDER BY class').all() as { class: string }[]
    ).map((r) => r.class);
  }

  /** Inserts or, for a known path, updates a slide; true when it was new. */
  upsertSlide(slide: NewSlide): boolean {
    const known = this.db.prepare('SELECT id FROM slides WHERE path = ?').get(slide.path) !== undefined;
    this.db
      .prepare(
        `INSERT INTO slides (path, patient, label, mpp, width, height, vendor, fold, annotations, source, imported_at)
         VALUES (@path, @patient, @label, @mpp, @width, @height, @vendor, @fold, @annotations, @source, @importedAt)
         ON CONFLICT(path) DO UPDATE SET patient = excluded.patient, label = excluded.label, mpp = excluded.mpp,
           width = excluded.width, height = excluded.height, vendor = excluded.vendor, fold = excluded.fold,
           annotations = excluded.annotations, source = excluded.source`,
      )
      .run({ ...slide, importedAt: new Date().toISOString() });
    return !known;
  }

  slides(): SlideRecord[] {
    const rows = this.db.prepare('SELECT * FROM slides ORDER BY label, patient, path').all() as (Omit<
      SlideRecord,
      'importedAt'
    > & { imported_at: string })[];
    return rows.map(({ imported_at, ...r }) => ({ ...r, importedAt: imported_at }));
  }

  saveSplit(split: Omit<SplitRecord, 'createdAt'>, members: readonly SplitMember[]): void {
    this.transaction(() => {
      this.db.prepare('DELETE FROM splits WHERE name = ?').run(split.name);
      this.db
        .prepare('INSERT INTO splits (name, kind, seed, params, created_at) VALUES (?, ?, ?, ?, ?)')
        .run(split.name, split.kind, split.seed, JSON.stringify(split.params), new Date().toISOString());
      const insert = this.db.prepare(
        'INSERT INTO split_members (split, image_id, partition, fold) VALUES (?, ?, ?, ?)',
      );
      for (const m of members) insert.run(split.name, m.imageId, m.partition, m.fold);
      this.record('split', { name: split.name, kind: split.kind, seed: split.seed, params: split.params });
    });
  }

  split(name: string): SplitRecord | undefined {
    const row = this.db.prepare('SELECT * FROM splits WHERE name = ?').get(name) as
      { name: string; kind: SplitKind; seed: number; params: string; created_at: string } | undefined;
    if (!row) return undefined;
    return {
      name: row.name,
      kind: row.kind,
      seed: row.seed,
      params: JSON.parse(row.params) as Record<string, unknown>,
      createdAt: row.created_at,
    };
  }

  splits(): SplitRecord[] {
    const names = this.db.prepare('SELECT name FROM splits ORDER BY name').all() as { name: string }[];
    return names.map((r) => this.split(r.name)).filter((s): s is SplitRecord => s !== undefined);
  }

  splitMembers(name: string): SplitMember[] {
    const rows = this.db
      .prepare('SELECT image_id, partition, fold FROM split_members WHERE split = ? ORDER BY image_id')
      .all(name) as { image_id: number; partition: Partition | null; fold: number | null }[];
    return rows.map((r) => ({ imageId: r.image_id, partition: r.partition, fold: r.fold }));
  }
}
