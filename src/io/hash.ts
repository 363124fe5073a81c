import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';

/** Hex digest of a file, streamed. */
export async function hashFile(file: string, algorithm: 'sha1' | 'sha256' | 'md5' = 'sha1'): Promise<string> {
  const hash = createHash(algorithm);
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest('hex');
}
