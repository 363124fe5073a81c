/**
 * The frozen base's feature cache is keyed by what would change its features: machines sharing
 * a cache (the slide extraction workers) keep their copies of the weights at different paths and
 * dates, and must agree on the key; other weights must not.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Network } from '../../src/engine/network.js';
import { buildSpec, featureSpec } from '../../src/engine/zoo.js';
import { zooFeatures } from '../../src/train/probe.js';
import { tempDir } from '../fixtures.js';

describe('feature cache key', () => {
  it('is the same for the same weights at another path and date, and differs for other weights', async () => {
    const dir = tempDir('cache-key-');
    const spec = featureSpec(buildSpec('small_cnn', { inputSize: 32, head: { classes: 3, pooling: 'avg' } }));
    const network = await Network.create(spec);
    const bytes = Buffer.alloc(4096, 7);
    const here = path.join(dir, 'machine-a', 'weights.pt');
    const there = path.join(dir, 'machine-b', 'cache', 'weights.pt');
    const other = path.join(dir, 'other.pt');
    mkdirSync(path.dirname(here), { recursive: true });
    mkdirSync(path.dirname(there), { recursive: true });
    writeFileSync(here, bytes);
    copyFileSync(here, there);
    utimesSync(there, new Date(2020, 0, 1), new Date(2020, 0, 1));
    bytes[100] = 8;
    writeFileSync(other, bytes);
    const key = async (pretrained: string | null): Promise<string> => {
      const features = await zooFeatures(network, { pretrained, bf16: false, engine: 'addon' });
      await features.runner.close();
      return features.cacheKey;
    };
    assert.equal(await key(here), await key(there));
    assert.notEqual(await key(here), await key(other));
    assert.notEqual(await key(here), await key(null));
    // A folder of weights (TF.js) is known by its files' names and contents.
    const folderA = path.join(dir, 'tfjs-a');
    const folderB = path.join(dir, 'tfjs-b');
    for (const folder of [folderA, folderB]) {
      mkdirSync(path.join(folder, 'shards'), { recursive: true });
      writeFileSync(path.join(folder, 'model.json'), '{}');
      copyFileSync(here, path.join(folder, 'shards', 'group1.bin'));
    }
    assert.equal(await key(folderA), await key(folderB));
    writeFileSync(path.join(folderB, 'shards', 'group1.bin'), bytes);
    assert.notEqual(await key(folderA), await key(folderB));
    // A file linked in (a shared store, a hub's snapshot folder) counts by what it links to.
    const folderC = path.join(dir, 'tfjs-c');
    mkdirSync(path.join(folderC, 'shards'), { recursive: true });
    writeFileSync(path.join(folderC, 'model.json'), '{}');
    symlinkSync(here, path.join(folderC, 'shards', 'group1.bin'));
    assert.equal(await key(folderA), await key(folderC));
  });
});
