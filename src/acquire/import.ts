/**
 * `pathotype data import`: registers a class-per-folder image collection (or a tarball of one)
 * in the catalog. Each image gets its class, case, SHA-1, size, format and pixel scale. Files
 * that are not readable images are reported and skipped; the import goes on. Re-importing the
 * same files changes nothing.
 */
import { readdir, stat } from 'node:fs/promises';
import path from 'node:path';

import { ConfigError, PathotypeError } from '../errors.js';
import { extractArchive } from '../io/archive.js';
import type { Catalog, NewImage } from './catalog.js';
import { caseIdFor, formatGroupRule, type GroupRule } from './grouping.js';
import { hashFile } from '../io/hash.js';
import { probeImage } from '../image/image-io.js';
import { inferScale, scaleOfMpp } from '../image/scale.js';
import type { Workspace } from '../workspace.js';

export interface ImportOptions {
  groupBy: GroupRule;
  /** Pixel scale relative to the original release, for every image; inferred from the size when absent. */
  scale?: number;
  /** Micrometres per pixel, when known. */
  mpp?: number;
  maxPixels?: number;
  onProgress?: (done: number, total: number) => void;
}

export interface ImportReport {
  source: string;
  added: number;
  updated: number;
  unchanged: number;
  skipped: { path: string; reason: string }[];
  perClass: Record<string, number>;
  cases: number;
}

const ARCHIVE = /\.(tar\.gz|tgz|tar)$/i;

function hidden(name: string): boolean {
  return name.startsWith('.') || name === '__MACOSX';
}

async function listFiles(dir: string, relative = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(dir, relative), { withFileTypes: true })) {
    if (hidden(entry.name)) continue;
    const rel = path.join(relative, entry.name);
    if (entry.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else if (entry.isFile()) out.push(rel);
  }
  return out.sort();
}

async function mapLimit<T, R>(items: readonly T[], limit: number, fn: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const workers = Array.from({ length: Math.min(limit, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  });
  await Promise.all(workers);
  return results;
}

interface Candidate {
  file: string;
  className: string;
  relative: string;
}

type Examined = { ok: true; image: NewImage } | { ok: false; path: string; reason: string };

export async function importImages(
  catalog: Catalog,
  workspace: Workspace,
  source: string,
  options: ImportOptions,
): Promise<ImportReport> {
  if (options.scale !== undefined && !(options.scale > 0)) throw new ConfigError('--scale must be above 0');
  if (options.mpp !== undefined && !(options.mpp > 0)) throw new ConfigError('--mpp must be above 0');

  const root = await sourceRoot(source, workspace);
  const skipped: ImportReport['skipped'] = [];
  const candidates: Candidate[] = [];
  for (const entry of await readdir(root, { withFileTypes: true })) {
    if (hidden(entry.name)) continue;
    const full = path.join(root, entry.name);
    if (!entry.isDirectory()) {
      skipped.push({ path: full, reason: 'not inside a class folder' });
      continue;
    }
    for (const relative of await listFiles(full)) {
      candidates.push({ file: path.join(full, relative), className: entry.name, relative });
    }
  }
  if (candidates.length === 0) {
    throw new PathotypeError(
      'ERR_IMPORT',
      `no files found in class folders under ${root} (expected CLASS/image.tif ...)`,
    );
  }

  const examined = await examineAll(candidates, root, options);

  const report: ImportReport = {
    source: root,
    added: 0,
    updated: 0,
    unchanged: 0,
    skipped,
    perClass: {},
    cases: 0,
  };
  const cases = new Set<string>();
  catalog.transaction(() => {
    for (const item of examined) {
      if (!item.ok) {
        report.skipped.push({ path: item.path, reason: item.reason });
        continue;
      }
      const { image } = item;
      const known = catalog.imageByPath(image.path);
      const twin = catalog.imageBySha1(image.sha1);
      if (twin && twin.path !== image.path) {
        report.skipped.push({ path: image.path, reason: `same content as ${twin.path}, already imported` });
        continue;
      }
      const same =
        known &&
        known.sha1 === image.sha1 &&
        known.className === image.className &&
        known.caseId === image.caseId &&
        known.scale === image.scale &&
        known.mpp === image.mpp;
      if (!same) catalog.upsertImage(image);
      if (!known) report.added++;
      else if (same) report.unchanged++;
      else report.updated++;
      report.perClass[image.className] = (report.perClass[image.className] ?? 0) + 1;
      cases.add(image.caseId);
    }
    report.cases = cases.size;
    catalog.record('import', {
      source: root,
      groupBy: formatGroupRule(options.groupBy),
      added: report.added,
      updated: report.updated,
      unchanged: report.unchanged,
      skipped: report.skipped.length,
    });
  });
  return report;
}

/** The folder of class folders: the source itself, or where its archive was extracted. */
async function sourceRoot(source: string, workspace: Workspace): Promise<string> {
  let root = path.resolve(source);
  let info;
  try {
    info = await stat(root);
  } catch {
    throw new PathotypeError('ERR_IMPORT', `${root} does not exist`);
  }
  if (info.isFile()) {
    if (!ARCHIVE.test(root))
      throw new PathotypeError('ERR_IMPORT', `${root} is neither a folder nor a .tar.gz/.tgz/.tar archive`);
    const name = path.basename(root).replace(ARCHIVE, '');
    const extracted = await extractArchive(root, path.join(workspace.datasetsDir, name));
    root = extracted.destination;
    // A tarball usually wraps its class folders in one top folder (lymphoma.tar.gz does not).
    const top = (await readdir(root, { withFileTypes: true })).filter((e) => !hidden(e.name));
    const only = top[0];
    if (top.length === 1 && only?.isDirectory()) {
      const inner = await readdir(path.join(root, only.name), { withFileTypes: true });
      if (inner.some((e) => e.isDirectory() && !hidden(e.name))) root = path.join(root, only.name);
    }
  }

  return root;
}

/** Every candidate probed from its header and hashed, four at a time; unreadable ones say why. */
async function examineAll(
  candidates: readonly Candidate[],
  root: string,
  options: ImportOptions,
): Promise<Examined[]> {
  let done = 0;
  return mapLimit(candidates, 4, async (c): Promise<Examined> => {
    try {
      const caseId = caseIdFor(options.groupBy, c.className, c.relative);
      const probe = await probeImage(
        c.file,
        options.maxPixels === undefined ? {} : { maxPixels: options.maxPixels },
      );
      const sha1 = await hashFile(c.file);
      return {
        ok: true,
        image: {
          path: c.file,
          fileName: c.relative,
          className: c.className,
          caseId,
          sha1,
          width: probe.width,
          height: probe.height,
          channels: probe.channels,
          bitDepth: probe.bitDepth,
          format: probe.format,
          // Given microns per pixel give the scale when no scale is given (scale = 0.32 / mpp).
          scale:
            options.scale ??
            (options.mpp !== undefined ? scaleOfMpp(options.mpp) : inferScale(probe.width, probe.height)),
          mpp: options.mpp ?? null,
          source: root,
        },
      };
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      return { ok: false, path: c.file, reason: error instanceof Error ? error.message : String(error) };
    } finally {
      options.onProgress?.(++done, candidates.length);
    }
  });
}
