import assert from 'node:assert/strict';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { ArchiveError, extractArchive } from '../../src/io/archive.js';
import { makeTar, tempDir, writeFile, type TarEntry } from '../fixtures.js';

const good: TarEntry[] = [
  { name: 'lymphoma/', type: 'dir' },
  { name: 'lymphoma/CLL/', type: 'dir' },
  { name: 'lymphoma/CLL/a.tif', data: Buffer.from('pixels') },
  { name: 'lymphoma/CLL/.DS_Store', data: Buffer.from('junk') },
  { name: 'lymphoma/CLL/._a.tif', data: Buffer.from('junk') },
  { name: '__MACOSX/lymphoma/._CLL', data: Buffer.from('junk') },
];

describe('archive extraction', () => {
  it('extracts a tarball and skips junk', async () => {
    const dir = tempDir();
    const archive = writeFile(path.join(dir, 'data.tar.gz'), makeTar(good));
    const report = await extractArchive(archive, path.join(dir, 'out'));
    assert.equal(report.files, 1);
    assert.equal(report.skippedJunk.length, 3);
    assert.deepEqual(readdirSync(path.join(dir, 'out/lymphoma/CLL')), ['a.tif']);
    assert.ok(!existsSync(path.join(dir, 'out/__MACOSX')));
  });

  for (const [what, hostile] of [
    ['path traversal', { name: 'lymphoma/../../evil.tif', data: Buffer.from('x') }],
    ['an absolute path', { name: '/tmp/pathotype-evil.tif', data: Buffer.from('x') }],
    ['a symbolic link', { name: 'lymphoma/CLL/link.tif', type: 'symlink', linkTarget: '/etc/passwd' }],
    ['a hard link', { name: 'lymphoma/CLL/hard.tif', type: 'hardlink', linkTarget: 'lymphoma/CLL/a.tif' }],
  ] as const) {
    it(`rejects an archive holding ${what} and extracts nothing`, async () => {
      const dir = tempDir();
      const archive = writeFile(path.join(dir, 'bad.tar.gz'), makeTar([...good, hostile]));
      await assert.rejects(extractArchive(archive, path.join(dir, 'out')), (e: unknown) => {
        assert.ok(e instanceof ArchiveError);
        assert.match(e.message, /rejected and nothing was extracted/);
        return true;
      });
      assert.ok(!existsSync(path.join(dir, 'out')));
      assert.ok(!existsSync(path.join(dir, 'out.partial')));
      assert.ok(!existsSync(path.join(dir, '..', 'evil.tif')));
    });
  }

  it('rejects corrupt archives and archives past the size limit', async () => {
    const dir = tempDir();
    const corrupt = writeFile(path.join(dir, 'corrupt.tar.gz'), makeTar(good).subarray(0, 40));
    await assert.rejects(extractArchive(corrupt, path.join(dir, 'out')), ArchiveError);
    const big = writeFile(
      path.join(dir, 'big.tar.gz'),
      makeTar([{ name: 'a/b.tif', data: Buffer.alloc(4096) }]),
    );
    await assert.rejects(extractArchive(big, path.join(dir, 'out2'), { maxBytes: 1000 }), /more than/);
    assert.ok(!existsSync(path.join(dir, 'out2')));
  });
});
