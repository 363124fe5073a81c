/**
 * Loads Keras-named pretrained weights onto a zoo network: each weight is found by layer and
 * role, converted to the engine's layout and imported in one validated call. Weights of layers
 * the network does not have (an old classifier, a foreign head) are reported, not loaded.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { EngineInputError } from '../../errors.js';
import type { Network, NamedTensor } from '../network.js';
import { engineTensorName, kerasToEngine, parseKerasWeightName } from './keras-layout.js';
import { readKerasH5 } from './keras-h5.js';
import type { KerasWeight } from './source.js';
import { readTfjsLayersModel } from './tfjs.js';

export interface PretrainedReport {
  source: string;
  loaded: number;
  /** Network tensors that no weight filled (a new head, typically). */
  missing: string[];
  /** File weights that fit no network tensor. */
  unused: string[];
}

export async function readPretrained(source: string): Promise<KerasWeight[]> {
  if (!existsSync(source)) throw new EngineInputError(`no pretrained weights at ${source}`);
  if (statSync(source).isDirectory()) return readTfjsLayersModel(source);
  if (/\.json$/i.test(source)) return readTfjsLayersModel(path.dirname(source));
  return readKerasH5(source);
}

/**
 * Loads what fits. With `require` (layer-name prefixes), every network tensor under them must
 * be filled, or nothing is loaded.
 */
export async function loadPretrained(
  network: Network,
  weights: readonly KerasWeight[],
  source: string,
  options: { require?: readonly string[] } = {},
): Promise<PretrainedReport> {
  const tensors = new Map((await network.exportTensors()).map((t) => [t.name, t.shape]));
  const toLoad: NamedTensor[] = [];
  const unused: string[] = [];
  for (const w of weights) {
    const parsed = parseKerasWeightName(w.name);
    if (!parsed) {
      unused.push(w.name);
      continue;
    }
    const target = engineTensorName(parsed.layer, parsed.role);
    const shape = tensors.get(target);
    if (!shape) {
      unused.push(w.name);
      continue;
    }
    const converted = kerasToEngine(parsed.layer, parsed.role, w.shape, w.data, shape);
    if (converted.shape.join() !== shape.join()) {
      throw new EngineInputError(
        `pretrained weight ${w.name} has shape [${w.shape.join(',')}], which does not fit ${target} [${shape.join(',')}]: ` +
          'a different architecture or width multiplier?',
      );
    }
    toLoad.push(converted);
  }
  const loadedNames = new Set(toLoad.map((t) => t.name));
  const missing = [...tensors.keys()].filter((n) => !loadedNames.has(n));
  const required = options.require ?? [];
  const unfilled = missing.filter((n) => required.some((p) => n.startsWith(p)));
  if (unfilled.length > 0) {
    throw new EngineInputError(
      `${source} does not hold weights for ${unfilled.length} required tensors (first: ${unfilled[0] ?? ''})`,
    );
  }
  if (toLoad.length === 0) throw new EngineInputError(`no weight in ${source} fits this network`);
  await network.importTensors(toLoad, { strict: false });
  return { source, loaded: toLoad.length, missing, unused };
}
