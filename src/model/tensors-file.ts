/**
 * Named float32 tensors in two files: `<base>.bin` (the values back to back, little-endian) and
 * `<base>.json` (name, shape and offset of each). Plain, mappable, and readable by any tool.
 */
import { readFile, writeFile } from 'node:fs/promises';

import { PathotypeError } from '../errors.js';
import type { NamedTensor } from '../engine/network.js';

interface Entry {
  name: string;
  shape: number[];
  offset: number;
}

export async function writeTensors(base: string, tensors: readonly NamedTensor[]): Promise<void> {
  const entries: Entry[] = [];
  let offset = 0;
  for (const t of tensors) {
    entries.push({ name: t.name, shape: [...t.shape], offset });
    offset += t.data.byteLength;
  }
  const bytes = Buffer.alloc(offset);
  for (const [i, t] of tensors.entries())
    Buffer.from(t.data.buffer, t.data.byteOffset, t.data.byteLength).copy(bytes, entries[i]?.offset ?? 0);
  await writeFile(`${base}.bin`, bytes);
  await writeFile(`${base}.json`, `${JSON.stringify(entries)}\n`);
}

export async function readTensors(base: string): Promise<NamedTensor[]> {
  let entries: Entry[];
  let bytes: Buffer;
  try {
    entries = JSON.parse(await readFile(`${base}.json`, 'utf8')) as Entry[];
    bytes = await readFile(`${base}.bin`);
  } catch (cause) {
    throw new PathotypeError(
      'ERR_WEIGHTS',
      `cannot read the weights ${base}.bin/.json: ${(cause as Error).message}`,
      { cause },
    );
  }
  return entries.map((e) => {
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (e.offset + count * 4 > bytes.length)
      throw new PathotypeError('ERR_WEIGHTS', `${base}.bin is truncated at ${e.name}`);
    const data = new Float32Array(count);
    Buffer.from(data.buffer).set(bytes.subarray(e.offset, e.offset + count * 4));
    return { name: e.name, shape: e.shape, data };
  });
}
