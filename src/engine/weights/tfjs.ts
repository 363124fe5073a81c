/**
 * TensorFlow.js layers models (model.json plus binary shards), as exported by tfjs-converter
 * and Teachable Machine. Only float32 weights are read; quantised ones are refused.
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';

import { EngineInputError } from '../../errors.js';
import type { KerasWeight } from './source.js';

interface Manifest {
  weightsManifest?: {
    paths: string[];
    weights: { name: string; shape: number[]; dtype: string; quantization?: unknown }[];
  }[];
}

export async function readTfjsLayersModel(dir: string): Promise<KerasWeight[]> {
  const modelPath = path.join(dir, 'model.json');
  let manifest: Manifest;
  try {
    manifest = JSON.parse(await readFile(modelPath, 'utf8')) as Manifest;
  } catch (cause) {
    throw new EngineInputError(`${modelPath} is missing or not JSON: ${(cause as Error).message}`, { cause });
  }
  if (!Array.isArray(manifest.weightsManifest))
    throw new EngineInputError(`${modelPath} has no weightsManifest`);
  const weights: KerasWeight[] = [];
  for (const group of manifest.weightsManifest) {
    const buffers = await Promise.all(
      group.paths.map(async (p) => {
        const file = path.resolve(dir, p);
        if (path.relative(dir, file).startsWith('..'))
          throw new EngineInputError(`${modelPath} points outside its folder: ${p}`);
        return readFile(file);
      }),
    );
    const bytes = Buffer.concat(buffers);
    let offset = 0;
    for (const spec of group.weights) {
      if (spec.dtype !== 'float32' || spec.quantization) {
        throw new EngineInputError(
          `${modelPath}: weight ${spec.name} is ${spec.dtype}${spec.quantization ? ' (quantised)' : ''}; only float32 is supported`,
        );
      }
      const count = spec.shape.reduce((a, b) => a * b, 1);
      if (offset + count * 4 > bytes.length)
        throw new EngineInputError(`${modelPath}: the shards end before weight ${spec.name}`);
      const data = new Float32Array(count);
      Buffer.from(data.buffer).set(bytes.subarray(offset, offset + count * 4));
      offset += count * 4;
      const layer = spec.name.split('/').slice(-2, -1)[0] ?? spec.name;
      weights.push({ name: spec.name, layer, shape: spec.shape, data });
    }
    if (offset !== bytes.length)
      throw new EngineInputError(
        `${modelPath}: the shards hold ${bytes.length - offset} bytes more than the manifest describes`,
      );
  }
  return weights;
}
