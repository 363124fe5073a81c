import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import sharp from 'sharp';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { pngHeaderClaiming, tempDir } from '../fixtures.js';
import { trainedPackage } from './model-fixture.js';

function multipart(
  field: string,
  fileName: string,
  content: Buffer,
  type = 'image/png',
): { body: Buffer; headers: Record<string, string> } {
  const boundary = '----pathotype-test-boundary';
  const body = Buffer.concat([
    Buffer.from(
      `--${boundary}\r\nContent-Disposition: form-data; name="${field}"; filename="${fileName}"\r\nContent-Type: ${type}\r\n\r\n`,
    ),
    content,
    Buffer.from(`\r\n--${boundary}--\r\n`),
  ]);
  return { body, headers: { 'content-type': `multipart/form-data; boundary=${boundary}` } };
}

describe('REST API', () => {
  let server: PathotypeServer;
  let images: string;
  let png: Buffer;

  before(async () => {
    const fixture = await trainedPackage();
    images = fixture.images;
    png = readFileSync(path.join(images, 'BLOB/0.png'));
    server = await buildServer({
      modelDir: fixture.modelDir,
      dataDir: fixture.dataDir,
      maxBytes: 2 * 1024 * 1024,
      maxPixels: 4_000_000,
    });
  });
  after(() => server.app.close());

  it('answers health, readiness, models and the OpenAPI document', async () => {
    assert.deepEqual((await server.app.inject('/healthz')).json(), { status: 'ok' });
    const ready = (await server.app.inject('/readyz')).json<{ status: string; model: string }>();
    assert.equal(ready.status, 'ready');
    assert.equal(ready.model, 'served@1');
    const models = (await server.app.inject('/api/v1/models')).json<{ name: string; classes: string[] }[]>();
    assert.deepEqual(models[0]?.classes, ['BLOB', 'CHECKER', 'STRIPES']);
    const openapi = (await server.app.inject('/openapi.json')).json<{
      openapi: string;
      paths: Record<string, unknown>;
    }>();
    assert.match(openapi.openapi, /^3\./);
    for (const p of [
      '/api/v1/predictions',
      '/api/v1/predictions/{id}',
      '/api/v1/predictions/{id}/heatmap.png',
      '/api/v1/models',
      '/healthz',
      '/readyz',
    ]) {
      assert.ok(openapi.paths[p], `OpenAPI documents ${p}`);
    }
    const docs = await server.app.inject('/docs/');
    assert.equal(docs.statusCode, 200);
    assert.match(docs.body, /swagger/i);
    assert.doesNotMatch(docs.body, /https?:\/\/(cdn|unpkg)/, 'the docs are served locally');
  });

  it('predicts from multipart and raw uploads, stores and returns results and heatmaps', async () => {
    const form = multipart('image', '0.png', png);
    const created = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions',
      payload: form.body,
      headers: form.headers,
    });
    assert.equal(created.statusCode, 201, created.body);
    const p = created.json<{
      id: string;
      predicted: string;
      voteShares: Record<string, number>;
      grid: { cells: unknown[] };
      fileName: string;
      model: { id: string };
      timings: { totalMs: number };
    }>();
    assert.equal(p.fileName, '0.png');
    assert.equal(p.model.id, 'served@1');
    assert.equal(p.grid.cells.length, 9);
    assert.ok(p.timings.totalMs > 0);
    assert.ok(Math.abs(Object.values(p.voteShares).reduce((a, b) => a + b, 0) - 1) < 1e-6);
    const raw = await server.app.inject({
      method: 'POST',
      url: '/api/v1/predictions?filename=raw.png',
      payload: png,
      headers: { 'content-type': 'application/octet-stream' },
    });
    assert.equal(raw.statusCode, 201, raw.body);
    assert.equal(raw.json<{ fileName: string }>().fileName, 'raw.png');
    const fetched = (await server.app.inject(`/api/v1/predictions/${p.id}`)).json<{
      id: string;
      predicted: string;
    }>();
    assert.deepEqual([fetched.id, fetched.predicted], [p.id, p.predicted]);
    const heatmap = await server.app.inject(`/api/v1/predictions/${p.id}/heatmap.png`);
    assert.equal(heatmap.headers['content-type'], 'image/png');
    assert.equal((await sharp(heatmap.rawPayload).metadata()).width, 48);
    const listed = (await server.app.inject('/api/v1/predictions?limit=1&q=raw')).json<{
      total: number;
      items: { fileName: string }[];
    }>();
    assert.equal(listed.total, 1);
    assert.equal(listed.items[0]?.fileName, 'raw.png');
    const record = await server.store.predictions.get(p.id);
    assert.ok(record?.imageFile && record.sha256.length === 64 && record.client.address.length > 0);
  });

  it('rejects bad input with a 4xx in one error shape, and stays up', async () => {
    const cases: [string, { payload: Buffer; headers: Record<string, string> }, number, RegExp][] = [
      [
        'garbage',
        { payload: Buffer.from('not an image'), headers: { 'content-type': 'image/png' } },
        // Judged by its first bytes before any decoder sees it (issue 27): not an image at all.
        415,
        /not a readable image/,
      ],
      [
        'truncated',
        { payload: png.subarray(0, 200), headers: { 'content-type': 'image/png' } },
        422,
        /not a readable image|could not be decoded/,
      ],
      [
        'bomb',
        { payload: pngHeaderClaiming(30_000, 30_000), headers: { 'content-type': 'image/png' } },
        413,
        /above the limit/,
      ],
      [
        'gif',
        {
          payload: await sharp(Buffer.alloc(300, 9), { raw: { width: 10, height: 10, channels: 3 } })
            .gif()
            .toBuffer(),
          headers: { 'content-type': 'application/octet-stream' },
        },
        415,
        /TIFF, PNG, JPEG and WebP/,
      ],
      [
        'too big',
        { payload: Buffer.alloc(3 * 1024 * 1024), headers: { 'content-type': 'application/octet-stream' } },
        413,
        /./,
      ],
      [
        'empty',
        { payload: Buffer.alloc(0), headers: { 'content-type': 'application/octet-stream' } },
        400,
        /./,
      ],
      [
        'wrong type',
        { payload: Buffer.from('{"a":1}'), headers: { 'content-type': 'application/json' } },
        400,
        /./,
      ],
    ];
    for (const [what, request, status, message] of cases) {
      const response = await server.app.inject({ method: 'POST', url: '/api/v1/predictions', ...request });
      assert.equal(response.statusCode, status, `${what}: ${response.body}`);
      const body = response.json<{ error: { code: string; message: string } }>();
      assert.equal(typeof body.error.code, 'string', what);
      assert.match(body.error.message, message, what);
    }
    const plain = async (width: number, rgb: [number, number, number]): Promise<Buffer> =>
      sharp({
        create: { width, height: width, channels: 3, background: { r: rgb[0], g: rgb[1], b: rgb[2] } },
      })
        .png()
        .toBuffer();
    // What the model was not made for is refused with its reason, never answered.
    for (const [what, image, code] of [
      ['a 10x10 pink field', await plain(10, [200, 120, 180]), 'ERR_NO_PATCHES'],
      ['a grey field', await plain(64, [100, 100, 100]), 'ERR_NOT_HE'],
      ['a white field', await plain(64, [255, 255, 255]), 'ERR_BACKGROUND'],
      ['a green pen mark', await plain(64, [40, 160, 60]), 'ERR_NOT_HE'],
    ] as const) {
      const refused = await server.app.inject({
        method: 'POST',
        url: '/api/v1/predictions',
        payload: image,
        headers: { 'content-type': 'image/png' },
      });
      assert.equal(refused.statusCode, 422, what);
      assert.equal(refused.json<{ error: { code: string } }>().error.code, code, what);
    }
    const wrongField = multipart('document', 'x.png', png);
    assert.equal(
      (
        await server.app.inject({
          method: 'POST',
          url: '/api/v1/predictions',
          payload: wrongField.body,
          headers: wrongField.headers,
        })
      ).statusCode,
      201,
      'the first file field is taken',
    );
    assert.equal((await server.app.inject('/api/v1/predictions/not-an-id')).statusCode, 400);
    const missing = await server.app.inject('/api/v1/predictions/00000000-0000-0000-0000-000000000000');
    assert.equal(missing.statusCode, 404);
    assert.equal(missing.json<{ error: { code: string } }>().error.code, 'ERR_NOT_FOUND');
    assert.equal((await server.app.inject('/api/v1/predictions?limit=1000')).statusCode, 400);
    assert.equal(
      (await server.app.inject('/nowhere')).json<{ error: { code: string } }>().error.code,
      'ERR_NOT_FOUND',
    );
    assert.equal((await server.app.inject('/healthz')).statusCode, 200, 'still up');
  });

  it('requires a valid API key once keys exist, and stays closed when the last one is revoked', async () => {
    const fixture = await trainedPackage();
    const closed = await buildServer({ modelDir: fixture.modelDir, dataDir: tempDir() });
    const { key, record } = await closed.store.keys.create({ name: 'viewer', role: 'viewer' });
    try {
      assert.equal((await closed.app.inject('/api/v1/models')).statusCode, 401);
      assert.equal(
        (await closed.app.inject({ url: '/api/v1/models', headers: { authorization: 'Bearer wrong' } }))
          .statusCode,
        401,
      );
      assert.equal(
        (await closed.app.inject({ url: '/api/v1/models', headers: { authorization: `Bearer ${key}` } }))
          .statusCode,
        200,
      );
      assert.equal(
        (await closed.app.inject({ url: '/api/v1/models', headers: { 'x-api-key': key } })).statusCode,
        200,
      );
      assert.equal((await closed.app.inject('/healthz')).statusCode, 200, 'health needs no key');
      const [stored] = await closed.store.db.query<{ hash: string }>(
        'SELECT hash FROM api_keys WHERE id = ?',
        [record.id],
      );
      assert.ok(stored);
      assert.notEqual(stored.hash, key);
      assert.match(stored.hash, /^[0-9a-f]{64}$/);
      await closed.store.keys.revoke(record.id);
      for (const headers of [{}, { authorization: `Bearer ${key}` }])
        assert.equal(
          (await closed.app.inject({ url: '/api/v1/models', headers })).statusCode,
          401,
          'no active key: still closed',
        );
    } finally {
      await closed.app.close();
    }
  });

  it('turns excess load away with 503 and Retry-After, keeping memory bounded', async () => {
    const fixture = await trainedPackage();
    const tight = await buildServer({ modelDir: fixture.modelDir, dataDir: fixture.dataDir, maxWaiting: 1 });
    try {
      const requests = Array.from({ length: 8 }, () =>
        tight.app.inject({
          method: 'POST',
          url: '/api/v1/predictions',
          payload: png,
          headers: { 'content-type': 'image/png' },
        }),
      );
      const responses = await Promise.all(requests);
      const codes = responses.map((r) => r.statusCode);
      assert.ok(codes.includes(201), codes.join());
      const busy = responses.find((r) => r.statusCode === 503);
      assert.ok(busy, `expected some 503s: ${codes.join()}`);
      assert.equal(busy.headers['retry-after'], '2');
      assert.equal(busy.json<{ error: { code: string } }>().error.code, 'ERR_BUSY');
      assert.equal(
        (await tight.store.predictions.list({ limit: 100, offset: 0 })).total,
        codes.filter((c) => c === 201).length,
        'only completed requests are recorded',
      );
    } finally {
      await tight.app.close();
    }
  });

  it('finishes a request in flight when shut down gracefully', async () => {
    const fixture = await trainedPackage();
    const live = await buildServer({ modelDir: fixture.modelDir, dataDir: fixture.dataDir });
    // Hold the only inference slot so the upload is deterministically in flight (waiting its
    // turn) when the server is asked to close; polling for a running job raced a fast model.
    let release = (): void => undefined;
    const occupied = live.limiter.run(() => new Promise<void>((resolve) => (release = resolve)));
    try {
      const address = await live.app.listen({ host: '127.0.0.1', port: 0 });
      const pending = fetch(`${address}/api/v1/predictions?filename=late.png`, {
        method: 'POST',
        body: png,
        headers: { 'content-type': 'image/png' },
      });
      const deadline = Date.now() + 30_000;
      while (live.limiter.waiting === 0 && Date.now() < deadline)
        await new Promise((resolve) => setTimeout(resolve, 5));
      assert.equal(live.limiter.waiting, 1, 'the upload is in flight');
      const closing = live.app.close();
      release();
      const response = await pending;
      assert.equal(response.status, 201);
      assert.equal(
        response.headers.get('connection'),
        'close',
        'the keep-alive socket does not hold shutdown',
      );
      await closing;
    } finally {
      release();
      await occupied;
      await live.app.close();
    }
  });
});
