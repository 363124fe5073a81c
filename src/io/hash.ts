import { createHash } from 'node:crypto';
import { createReadStream, readdirSync, statSync } from 'node:fs';
import path from 'node:path';

/** Hex digest of a file, streamed. */
export async function hashFile(file: string, algorithm: 'sha1' | 'sha256' | 'md5' = 'sha1'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}

/**
 * Hex digest of a file, or of a folder's files (each one's relative path and content, in sorted
 * order): what a set of weights is, wherever it lies.
 */
export async function hashPath(target: string, algorithm: 'sha1' | 'sha256' = 'sha1'): Promise<string> {
  if (!statSync(target).isDirectory()) return hashFile(target, algorithm);
  const files = readdirSync(target, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => path.relative(target, path.join(e.parentPath, e.name)).split(path.sep).join('/'))
    .sort();
  const hash = createHash(algorithm);
  for (const file of files) hash.update(`${file}\0${await hashFile(path.join(target, file), algorithm)}\n`);
  return hash.digest('hex');
}
