import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Hex digest of a file, streamed. */
export async function hashFile(file: string, algorithm: 'sha1' | 'sha256' | 'md5' = 'sha1'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/** The files under a folder (links followed), as paths relative to it with '/', sorted. */
function filesUnder(root: string, dir = ''): string[] {
  const files: string[] = [];
  for (const name of readdirSync(path.join(root, dir))) {
    const relative = dir ? `${dir}/${name}` : name;
    const stat = statSync(path.join(root, relative));
    if (stat.isDirectory()) files.push(...filesUnder(root, relative));
    else if (stat.isFile()) files.push(relative);
  }
  return files.sort();
}

/**
 * Hex digest of a file, or of a folder's files (each one's relative path and content, in sorted
 * order, links followed): what a set of weights is, wherever it lies.
 */
export async function hashPath(target: string, algorithm: 'sha1' | 'sha256' = 'sha1'): Promise<string> {
  if (!statSync(target).isDirectory()) return hashFile(target, algorithm);
  const hash = createHash(algorithm);
  for (const file of filesUnder(target))
    hash.update(`${file}\0${await hashFile(path.join(target, file), algorithm)}\n`);
  return hash.digest('hex');
}
