/**
 * The red team's second round as tests (issue 27): a `next` with control characters, a Referer
 * that is not a URL, user names that pass for others, formats outside the allow-list, server
 * folders in messages, and a key acting for its user.
 */
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import Fastify from 'fastify';
import sharp from 'sharp';

import { buildServer, type PathotypeServer } from '../../src/serve/app.js';
import { refererOrigin } from '../../src/serve/access.js';
import { publicSlideJob } from '../../src/serve/schemas.js';
import type { SlideJob } from '../../src/store/slide-jobs.js';
import errorHandling from '../../src/serve/error-handler.js';
import { safeNext } from '../../src/serve/login-routes.js';
import { openStore, type ServerStore } from '../../src/store/open.js';
import { checkUserName, nameKey } from '../../src/store/users.js';
import { tempDir } from '../fixtures.js';
import { writeTestSlide } from '../slide-fixtures.js';
import { slideScalePackage } from './model-fixture.js';
import { login, ORIGIN } from './portal-session.js';

const PASSWORD = 'correct horse battery';

describe('sign-in redirects', () => {
  it('returns only to a path of this server without control characters', () => {
    assert.equal(safeNext('/slides/1?x=2'), '/slides/1?x=2');
    for (const bad of [
      '/a\r\nSet-Cookie: x=1',
      '/a\tb',
      '/a\nb',
      '/a\u0000',
      '/a\u007f',
      '/a\u0085b',
      '/a\u009b',
    ])
      assert.equal(safeNext(bad), '/', JSON.stringify(bad));
    for (const away of ['//evil.example', '/\\evil.example', 'https://evil.example', ''])
      assert.equal(safeNext(away), '/');
  });
});

describe('a garbage Referer', () => {
  it('names no origin instead of throwing', () => {
    assert.equal(refererOrigin('not a url'), '');
    assert.equal(refererOrigin('http://[::1'), '');
    assert.equal(refererOrigin(undefined), '');
    assert.equal(refererOrigin('http://localhost:80/page?x'), 'http://localhost');
  });
});

describe('user names', () => {
  let store: ServerStore;
  before(async () => {
    store = await openStore(tempDir());
  });
  after(async () => {
    await store.close();
  });

  it('are NFKC-normalised: full-width letters are the letters they stand for', () => {
    assert.equal(checkUserName('ａｄｍｉｎ'), 'admin');
    assert.equal(nameKey('ＡＤＭＩＮ'), 'admin');
  });

  it('refuse a Latin name with a Cyrillic or Greek look-alike in it', () => {
    assert.throws(() => checkUserName('\u0430dmin'), { code: 'ERR_CONFIG', message: /mixes Latin/ });
    assert.throws(() => checkUserName('r\u03bfot'), { code: 'ERR_CONFIG', message: /mixes Latin/ });
    // One script, or Latin beside a script that does not pass for it, is a name.
    assert.equal(checkUserName('\u0430\u0434\u043c\u0438\u043d'), '\u0430\u0434\u043c\u0438\u043d');
    assert.equal(checkUserName('Zoë-医生'), 'Zoë-医生');
  });

  it('are unique without regard to case or width', async () => {
    await store.users.add('Admin', 'admin', PASSWORD);
    await assert.rejects(store.users.add('admin', 'viewer', PASSWORD), {
      code: 'ERR_CONFIG',
      message: /already/,
    });
    await assert.rejects(store.users.add('ＡＤＭＩＮ', 'viewer', PASSWORD), { code: 'ERR_CONFIG' });
    await assert.rejects(store.users.add('\u0430dmin', 'viewer', PASSWORD), { code: 'ERR_CONFIG' });
    assert.equal((await store.users.list()).length, 1);
  });
});

describe('an unexpected failure', () => {
  it('answers 500 naming its request id, which the log line carries too', async () => {
    const app = Fastify({ logger: false });
    await app.register(errorHandling);
    app.get('/boom', () => {
      throw new Error('a bug');
    });
    const written: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = (chunk: string | Uint8Array): boolean =>
      written.push(typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString()) > 0;
    try {
      const response = await app.inject('/boom');
      assert.equal(response.statusCode, 500);
      const { error } = response.json<{ error: { code: string; message: string } }>();
      assert.equal(error.code, 'ERR_INTERNAL');
      const id = /\(request ([^)]+)\)/.exec(error.message)?.[1];
      assert.ok(id, error.message);
      assert.ok(written.some((line) => line.includes(`request ${id}`) && line.includes('a bug')));
    } finally {
      process.stderr.write = write;
      await app.close();
    }
  });
});

describe("the red team's cases on a protected server", () => {
  let server: PathotypeServer;
  let root: string;
  let png: Buffer;
  let paulaKey: string;
  let slideFile: string;

  before(async () => {
    const model = await slideScalePackage();
    root = path.join(tempDir(), 'slides-of-the-department');
    mkdirSync(path.join(root, 'cases'), { recursive: true });
    slideFile = (await writeTestSlide(path.join(root, 'cases', 'glass.tif'), [null, null], { across: 2 }))
      .file;
    png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#c080b0' } })
      .png()
      .toBuffer();
    server = await buildServer({ ...model, slideRoot: root });
    const paula = await server.store.users.add('paula', 'pathologist', PASSWORD);
    await server.store.users.add('olga', 'pathologist', PASSWORD);
    paulaKey = (await server.store.keys.create({ name: 'qupath', userId: paula.id, role: 'pathologist' }))
      .key;
  });
  after(() => server.app.close());

  const asPaula = (url: string, payload: Buffer | string, type: string) =>
    server.app.inject({
      method: 'POST',
      url,
      payload,
      headers: { 'content-type': type, authorization: `Bearer ${paulaKey}` },
    });

  it('only allow-listed formats reach a decoder: SVG, PDF and HEIF are refused by their bytes', async () => {
    const svg = Buffer.from(
      '<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY e "entity">]><svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&e;</text></svg>',
    );
    const pdf = Buffer.from('%PDF-1.4\n1 0 obj<</Type/Catalog>>endobj\ntrailer<</Root 1 0 R>>\n%%EOF\n');
    const heif = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#c080b0' } })
      .heif({ compression: 'av1' })
      .toBuffer();
    for (const [name, bytes] of [
      ['field.svg', svg],
      ['field.png', svg],
      ['field.pdf', pdf],
      ['field.heic', heif],
    ] as const) {
      const response = await asPaula(`/api/v1/predictions?filename=${name}`, bytes, 'image/png');
      assert.equal(response.statusCode, 415, `${name}: ${response.body}`);
      assert.equal(response.json<{ error: { code: string } }>().error.code, 'ERR_UNSUPPORTED_IMAGE');
    }
    // And past the check, libvips' own loaders for them are blocked in the server's process.
    await assert.rejects(sharp(svg).metadata());
    await assert.rejects(sharp(heif).metadata());
    assert.equal((await sharp(png).metadata()).format, 'png');
  });

  it('a PNG renamed .tif is read as the PNG it is; as a slide it never reaches OpenSlide', async () => {
    const image = await asPaula('/api/v1/predictions?filename=renamed.tif', png, 'image/tiff');
    assert.ok([201, 422].includes(image.statusCode), image.body);
    if (image.statusCode === 201) {
      const record = await server.store.predictions.get(image.json<{ id: string }>().id);
      assert.match(record?.imageFile ?? '', /\.png$/);
    }
    const boundary = '----pathotype-red-team';
    const form = Buffer.concat([
      Buffer.from(
        `--${boundary}\r\nContent-Disposition: form-data; name="slide"; filename="renamed.tif"\r\nContent-Type: image/tiff\r\n\r\n`,
      ),
      png,
      Buffer.from(`\r\n--${boundary}--\r\n`),
    ]);
    const slide = await asPaula('/api/v1/slides', form, `multipart/form-data; boundary=${boundary}`);
    assert.equal(slide.statusCode, 415, slide.body);
    assert.match(
      slide.json<{ error: { message: string } }>().error.message,
      /"renamed\.tif" is not a \.tif file/,
    );
  });

  it("messages name no server folder and quote the sender's path intact", async () => {
    for (const sent of ['.', 'cases', '..', 'cases/../..secret.tif', '../slides-of-the-department/x.svs']) {
      const response = await asPaula('/api/v1/slides', JSON.stringify({ path: sent }), 'application/json');
      assert.equal(response.statusCode, 404, `${sent}: ${response.body}`);
      const { message } = response.json<{ error: { message: string } }>().error;
      assert.ok(message.includes(JSON.stringify(sent)), `${sent}: ${message}`);
      assert.ok(
        !message.includes('slides-of-the-department') || sent.includes('slides-of-the-department'),
        message,
      );
      assert.ok(!message.includes(tmpdir()), message);
    }
  });

  it("a failed job's error names its slide as sent, not the server's copy or folders", () => {
    const job = {
      id: 'j',
      fileName: 'case 7.svs',
      slidePath: '/srv/pathotype/serve/slides/j/slide.svs',
      error: {
        code: 'ERR_SLIDE',
        message: 'cannot read /srv/pathotype/serve/slides/j/slide.svs: level 2 is damaged',
      },
      progress: { done: 0, total: 0 },
      summary: null,
    } as unknown as SlideJob;
    assert.deepEqual(publicSlideJob(job).error, {
      code: 'ERR_SLIDE',
      message: 'cannot read "case 7.svs": level 2 is damaged',
    });
  });

  it("a key acting for a user acts as that user: the portal cancels its job, another user may not, reviews are the user's", async () => {
    const submitted = await asPaula(
      '/api/v1/slides',
      JSON.stringify({ path: 'cases/glass.tif' }),
      'application/json',
    );
    assert.equal(submitted.statusCode, 202, submitted.body);
    const job = submitted.json<{ id: string }>();
    const cancel = async (name: string): Promise<number> => {
      const browser = await login(server, name);
      const response = await server.app.inject({
        method: 'POST',
        url: `/slides/${job.id}/cancel`,
        payload: new URLSearchParams({ _csrf: browser.csrf }).toString(),
        headers: {
          'content-type': 'application/x-www-form-urlencoded',
          cookie: browser.cookie,
          origin: ORIGIN,
        },
      });
      return response.statusCode;
    };
    assert.equal(await cancel('olga'), 403);
    // Cancelled (303), or finished already (409): either way not refused as someone else's.
    assert.ok([303, 409].includes(await cancel('paula')));
    assert.ok(existsSync(slideFile));
  });
});
