/**
 * Keras HDF5 weight files (model.save_weights / keras.applications downloads), read with
 * h5wasm. Layers come from the root `layer_names` attribute, each layer's weights from its
 * `weight_names` attribute in that order: this covers both the Keras 1 naming of the original
 * VGG16 file (`block1_conv1/block1_conv1_W_1:0`) and the Keras 2 one
 * (`block1_conv1/block1_conv1/kernel:0`).
 */
import { closeSync, existsSync, openSync, readSync } from 'node:fs';

import { Dataset, File as H5File, Group, ready } from 'h5wasm/node';

import { EngineInputError } from '../../errors.js';
import type { KerasWeight } from './source.js';

function strings(value: unknown): string[] {
  if (Array.isArray(value))
    return value.map((v) => (v instanceof Uint8Array ? Buffer.from(v).toString() : String(v)));
  if (typeof value === 'string') return [value];
  return [];
}

const SIGNATURE = Buffer.from([0x89, 0x48, 0x44, 0x46, 0x0d, 0x0a, 0x1a, 0x0a]);

/** HDF5 files start with a signature at 0, 512, 1024, ... bytes; HDF5 itself would only complain later. */
function isHdf5(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(8);
    for (const offset of [0, 512, 1024, 2048, 4096]) {
      if (readSync(fd, buffer, 0, 8, offset) === 8 && buffer.equals(SIGNATURE)) return true;
    }
    return false;
  } finally {
    closeSync(fd);
  }
}

export async function readKerasH5(file: string): Promise<KerasWeight[]> {
  if (!existsSync(file)) throw new EngineInputError(`no weights file at ${file}`);
  if (!isHdf5(file)) throw new EngineInputError(`${file} is not a readable HDF5 file (no HDF5 signature)`);
  await ready;
  let h5: H5File;
  try {
    h5 = new H5File(file, 'r');
  } catch (cause) {
    throw new EngineInputError(`${file} is not a readable HDF5 file: ${String(cause)}`, { cause });
  }
  try {
    // Full-model files keep the weights under /model_weights.
    const root = h5.keys().includes('model_weights') ? h5.get('model_weights') : h5;
    if (!(root instanceof Group)) throw new EngineInputError(`${file} has no weight group`);
    const layerNames = strings(root.attrs.layer_names?.value);
    if (layerNames.length === 0)
      throw new EngineInputError(`${file} has no 'layer_names' attribute: not a Keras weights file`);
    const weights: KerasWeight[] = [];
    for (const layer of layerNames) {
      const group = root.get(layer);
      if (!(group instanceof Group))
        throw new EngineInputError(`${file}: layer '${layer}' is listed but missing`);
      for (const name of strings(group.attrs.weight_names?.value)) {
        const dataset = group.get(name);
        if (!(dataset instanceof Dataset))
          throw new EngineInputError(`${file}: weight '${layer}/${name}' is listed but missing`);
        const value = dataset.value;
        const shape = dataset.shape ?? [];
        let data: Float32Array;
        if (value instanceof Float32Array) data = value;
        else if (value instanceof Float64Array) data = Float32Array.from(value);
        else throw new EngineInputError(`${file}: weight '${layer}/${name}' is not a float array`);
        weights.push({ name, layer, shape, data });
      }
    }
    return weights;
  } finally {
    h5.close();
  }
}

/** Writes weights in the Keras 2 HDF5 layout (for tests and exports). */
export async function writeKerasH5(
  file: string,
  layers: { layer: string; weights: { name: string; shape: number[]; data: Float32Array }[] }[],
): Promise<void> {
  await ready;
  const h5 = new H5File(file, 'w');
  try {
    h5.create_attribute(
      'layer_names',
      layers.map((l) => l.layer),
    );
    for (const { layer, weights } of layers) {
      const group = h5.create_group(layer);
      // Layers without weights (pooling) get no attribute: h5wasm cannot write an empty string list.
      if (weights.length > 0) {
        group.create_attribute(
          'weight_names',
          weights.map((w) => w.name),
        );
      }
      for (const w of weights) {
        // Keras 2 names ('layer/kernel:0') live in a subgroup named after the layer.
        const parts = w.name.split('/');
        let parent = layer;
        for (const part of parts.slice(0, -1)) {
          parent = `${parent}/${part}`;
          if (!(h5.get(parent) instanceof Group)) h5.create_group(parent);
        }
        h5.create_dataset({
          name: `${parent}/${parts[parts.length - 1] ?? w.name}`,
          data: w.data,
          shape: w.shape,
          dtype: '<f',
        });
      }
    }
  } finally {
    h5.close();
  }
}
