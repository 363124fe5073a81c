import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { Catalog } from '../../src/acquire/catalog.js';
import { download, DownloadError } from '../../src/io/download.js';
import { fetchLymphoma } from '../../src/acquire/fetch.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { workspaceAt } from '../../src/workspace.js';
import { heImage, makeTar, tempDir } from '../fixtures.js';
import { closedPort, serveFiles, sha1, type TestServer } from '../http-server.js';
import sharp from 'sharp';

const body = randomBytes(300_000);

async function tif(seed: number): Promise<Buffer> {
  const image = heImage(40, 30, seed);
  return sharp(Buffer.from(image.data), { raw: { width: 40, height: 30, channels: 3 } })
    .tiff()
    .toBuffer();
}

describe('downloads', () => {
  let server: TestServer;
  let lymphoma: Buffer;
  let hostile: Buffer;

  before(async () => {
    const entries = [];
    for (const [k, c] of ['CLL', 'FL', 'MCL'].entries()) {
      for (let i = 1; i <= 2; i++)
        entries.push({ name: `${c}/sj-0${k}-100${i}_00${i}.tif`, data: await tif(k * 10 + i) });
    }
    lymphoma = makeTar([...entries, { name: 'CLL/.DS_Store', data: Buffer.from('junk') }]);
    hostile = makeTar([...entries, { name: '../escape.tif', data: Buffer.from('x') }]);
    server = await serveFiles({
      '/file.bin': { body },
      '/cut.bin': { body, cutAfter: 100_000 },
      '/noranges.bin': { body, cutAfter: 50_000, noRanges: true },
      '/page.html': { body: Buffer.from('<html>captive portal</html>'), contentType: 'text/html' },
      '/broken': { body, status: 500 },
      '/lymphoma.tar.gz': { body: lymphoma },
      '/hostile.tar.gz': { body: hostile },
    });
  });
  after(() => server.close());

  it('downloads and verifies a file', async () => {
    const dest = path.join(tempDir(), 'file.bin');
    const result = await download({
      urls: [server.url('/file.bin')],
      destination: dest,
      checksum: { algorithm: 'sha1', digest: sha1(body) },
    });
    assert.equal(result.bytes, body.length);
    assert.ok(readFileSync(dest).equals(body));
    const again = await download({
      urls: [server.url('/file.bin')],
      destination: dest,
      checksum: { algorithm: 'sha1', digest: sha1(body) },
    });
    assert.equal(again.alreadyThere, true, 'a verified file is not downloaded twice');
  });

  it('resumes an interrupted download with a range request', async () => {
    const dest = path.join(tempDir(), 'cut.bin');
    const options = {
      urls: [server.url('/cut.bin')],
      destination: dest,
      checksum: { algorithm: 'sha1' as const, digest: sha1(body) },
    };
    await assert.rejects(download(options), DownloadError);
    assert.ok(!existsSync(dest));
    const partial = statSync(`${dest}.part`).size;
    assert.ok(partial > 0 && partial < body.length, `kept ${partial} bytes`);
    const result = await download(options);
    assert.equal(result.resumedFrom, partial);
    assert.ok(readFileSync(dest).equals(body));
    assert.equal(server.requests.filter((r) => r.path === '/cut.bin').at(-1)?.range, `bytes=${partial}-`);
  });

  it('starts over when the server ignores ranges', async () => {
    const dest = path.join(tempDir(), 'noranges.bin');
    const options = {
      urls: [server.url('/noranges.bin')],
      destination: dest,
      checksum: { algorithm: 'sha1' as const, digest: sha1(body) },
    };
    await assert.rejects(download(options));
    const result = await download(options);
    assert.equal(result.resumedFrom, 0);
    assert.ok(readFileSync(dest).equals(body));
  });

  it('rejects a wrong checksum and keeps nothing', async () => {
    const dest = path.join(tempDir(), 'file.bin');
    await assert.rejects(
      download({
        urls: [server.url('/file.bin')],
        destination: dest,
        checksum: { algorithm: 'sha1', digest: '0'.repeat(40) },
      }),
      (e: unknown) =>
        e instanceof DownloadError && e.code === 'ERR_CHECKSUM' && /expected 0000/.test(e.message),
    );
    assert.ok(!existsSync(dest) && !existsSync(`${dest}.part`));
  });

  it('falls back to the mirror, and refuses web pages and HTTP errors', async () => {
    const dest = path.join(tempDir(), 'file.bin');
    const result = await download({
      urls: [
        server.url('/missing'),
        server.url('/broken'),
        server.url('/page.html'),
        server.url('/file.bin'),
      ],
      destination: dest,
      checksum: { algorithm: 'sha1', digest: sha1(body) },
    });
    assert.equal(result.url, server.url('/file.bin'));
    await assert.rejects(
      download({ urls: [server.url('/page.html')], destination: path.join(tempDir(), 'x') }),
      /sent a web page/,
    );
    await assert.rejects(
      download({ urls: [server.url('/broken')], destination: path.join(tempDir(), 'y') }),
      /HTTP 500/,
    );
  });

  it('fails fast offline, pointing to data import', async () => {
    const port = await closedPort();
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    const started = Date.now();
    await assert.rejects(
      fetchLymphoma(catalog, workspace, {
        urls: [`http://127.0.0.1:${port}/lymphoma.tar.gz`],
        groupBy: parseGroupRule('sj'),
      }),
      (e: unknown) => {
        assert.ok(e instanceof DownloadError);
        assert.equal(e.code, 'ERR_OFFLINE');
        assert.match(e.message, /pathotype data import lymphoma\.tar\.gz/);
        return true;
      },
    );
    assert.ok(Date.now() - started < 10_000);
    catalog.close();
  });

  it('fetches, extracts and imports a lymphoma-style tarball, with case ids from sj names', async () => {
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    const result = await fetchLymphoma(catalog, workspace, {
      urls: [server.url('/lymphoma.tar.gz')],
      sha1: sha1(lymphoma),
      groupBy: parseGroupRule('sj'),
    });
    assert.equal(result.imported.added, 6);
    assert.deepEqual(result.imported.perClass, { CLL: 2, FL: 2, MCL: 2 });
    assert.deepEqual([...new Set(catalog.images().map((i) => i.caseId))].sort(), [
      'sj-00-1001',
      'sj-00-1002',
      'sj-01-1001',
      'sj-01-1002',
      'sj-02-1001',
      'sj-02-1002',
    ]);
    assert.ok(catalog.history().some((h) => h.action === 'fetch'));
    catalog.close();
  });

  it('rejects a hostile tarball after download and imports nothing', async () => {
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    await assert.rejects(
      fetchLymphoma(catalog, workspace, {
        urls: [server.url('/hostile.tar.gz')],
        sha1: sha1(hostile),
        groupBy: parseGroupRule('sj'),
      }),
      /path traversal/,
    );
    assert.equal(catalog.images().length, 0);
    catalog.close();
  });
});
