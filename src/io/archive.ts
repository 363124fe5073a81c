/**
 * Safe extraction of dataset archives (.tar, .tar.gz, .tgz): streamed (a 1.4 GB tarball never
 * sits in memory), into a staging folder that only becomes the destination when the whole
 * archive passed. Path traversal, absolute paths, links and device files reject the archive;
 * junk (.DS_Store, AppleDouble files, __MACOSX) is skipped.
 */
import { existsSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';

import * as tar from 'tar';

import { PathotypeError } from '../errors.js';
import { ensureDir } from '../workspace.js';

export class ArchiveError extends PathotypeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ARCHIVE', message, options);
    this.name = 'ArchiveError';
  }
}

export interface ExtractOptions {
  /** Stop when the files would add up to more than this (a decompression bomb). Default 20 GiB. */
  maxBytes?: number;
  /** Stop past this many entries. Default 200,000. */
  maxEntries?: number;
}

export interface ExtractReport {
  destination: string;
  files: number;
  bytes: number;
  skippedJunk: string[];
}

const JUNK = [
  /(^|\/)\.DS_Store$/,
  /(^|\/)\._[^/]*$/,
  /(^|\/)__MACOSX(\/|$)/,
  /(^|\/)Thumbs\.db$/i,
  /(^|\/)desktop\.ini$/i,
];

export function isJunkPath(entryPath: string): boolean {
  return JUNK.some((re) => re.test(entryPath));
}

/** Why an entry may not be extracted, or undefined when it may. */
export function hostileReason(entryPath: string, type: string): string | undefined {
  if (path.isAbsolute(entryPath) || /^[a-zA-Z]:[\\/]/.test(entryPath)) return `absolute path '${entryPath}'`;
  if (entryPath.split(/[\\/]/).includes('..')) return `path traversal in '${entryPath}'`;
  if (!['File', 'OldFile', 'ContiguousFile', 'Directory'].includes(type))
    return `${type} entry '${entryPath}'`;
  return undefined;
}

export async function extractArchive(
  archive: string,
  destination: string,
  options: ExtractOptions = {},
): Promise<ExtractReport> {
  if (!existsSync(archive)) throw new ArchiveError(`the archive ${archive} does not exist`);
  const maxBytes = options.maxBytes ?? 20 * 1024 ** 3;
  const maxEntries = options.maxEntries ?? 200_000;
  const staging = `${destination}.partial`;
  await rm(staging, { recursive: true, force: true });
  ensureDir(staging);
  const report: ExtractReport = { destination, files: 0, bytes: 0, skippedJunk: [] };
  let hostile: string | undefined;
  let entries = 0;
  try {
    await tar.x({
      file: archive,
      cwd: staging,
      strict: true,
      preservePaths: false,
      filter: (entryPath, entry) => {
        if (hostile) return false;
        entries++;
        const type = 'type' in entry ? entry.type : 'File';
        const reason = hostileReason(entryPath, type);
        if (reason) {
          hostile = reason;
          return false;
        }
        if (entries > maxEntries) {
          hostile = `more than ${maxEntries} entries`;
          return false;
        }
        if (isJunkPath(entryPath)) {
          report.skippedJunk.push(entryPath);
          return false;
        }
        if (type !== 'Directory') {
          report.files++;
          report.bytes += entry.size ?? 0;
          if (report.bytes > maxBytes) {
            hostile = `more than ${(maxBytes / 1024 ** 3).toFixed(1)} GiB of files`;
            return false;
          }
        }
        return true;
      },
    });
  } catch (cause) {
    await rm(staging, { recursive: true, force: true });
    throw new ArchiveError(`${archive} is not a readable tar archive: ${(cause as Error).message}`, {
      cause,
    });
  }
  if (hostile) {
    await rm(staging, { recursive: true, force: true });
    throw new ArchiveError(`${archive} was rejected and nothing was extracted: it holds ${hostile}`);
  }
  await rm(destination, { recursive: true, force: true });
  await rename(staging, destination);
  return report;
}
