import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import sharp from 'sharp';

import { decodeRgb, ImageError, probeImage } from '../../src/image/image-io.js';
import { heImage, pngHeaderClaiming } from '../fixtures.js';

const base = heImage(20, 10, 1);
const raw = (channels: number, fill: number): Buffer => Buffer.alloc(20 * 10 * channels, fill);

describe('image decoding', () => {
  it('reads TIFF, PNG, JPEG and WebP as 8-bit RGB', async () => {
    const rgb = sharp(Buffer.from(base.data), { raw: { width: 20, height: 10, channels: 3 } });
    for (const [format, buffer] of [
      ['png', await rgb.clone().png().toBuffer()],
      ['tiff', await rgb.clone().tiff().toBuffer()],
      ['jpeg', await rgb.clone().jpeg().toBuffer()],
      ['webp', await rgb.clone().webp({ lossless: true }).toBuffer()],
    ] as const) {
      const probe = await probeImage(buffer);
      assert.equal(probe.format, format);
      const image = await decodeRgb(buffer);
      assert.equal(image.data.length, 20 * 10 * 3, format);
    }
  });

  it('converts grey, RGBA and 16-bit images to 8-bit RGB', async () => {
    const grey = await sharp(raw(1, 90), { raw: { width: 20, height: 10, channels: 1 } })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    assert.deepEqual([...(await decodeRgb(grey)).data.subarray(0, 3)], [90, 90, 90]);
    const rgba = await sharp(raw(4, 0), { raw: { width: 20, height: 10, channels: 4 } })
      .png()
      .toBuffer();
    assert.equal((await probeImage(rgba)).hasAlpha, true);
    assert.deepEqual(
      [...(await decodeRgb(rgba)).data.subarray(0, 3)],
      [255, 255, 255],
      'transparent becomes white glass',
    );
    const sixteen = await sharp(raw(3, 128), { raw: { width: 20, height: 10, channels: 3 } })
      .toColourspace('rgb16')
      .png()
      .toBuffer();
    assert.equal((await probeImage(sixteen)).bitDepth, 16);
    const decoded = await decodeRgb(sixteen);
    assert.equal(decoded.data.length, 600);
    assert.ok(Math.abs((decoded.data[0] ?? 0) - 128) <= 1, `16-bit 128 came out as ${decoded.data[0]}`);
    const sixteenTiff = await sharp(raw(3, 200), { raw: { width: 20, height: 10, channels: 3 } })
      .toColourspace('rgb16')
      .tiff()
      .toBuffer();
    assert.equal((await decodeRgb(sixteenTiff)).data.length, 600);
  });

  it('resizes while decoding', async () => {
    const png = await sharp(Buffer.from(base.data), { raw: { width: 20, height: 10, channels: 3 } })
      .png()
      .toBuffer();
    const image = await decodeRgb(png, { width: 40, height: 20 });
    assert.deepEqual([image.width, image.height, image.data.length], [40, 20, 2400]);
  });

  it('rejects garbage, truncated files, other formats and decompression bombs with clear errors', async () => {
    await assert.rejects(
      decodeRgb(Buffer.from('not an image at all')),
      (e: unknown) => e instanceof ImageError && /not a readable image/.test(e.message),
    );
    const png = await sharp(Buffer.from(heImage(64, 64, 2).data), {
      raw: { width: 64, height: 64, channels: 3 },
    })
      .png()
      .toBuffer();
    await assert.rejects(decodeRgb(png.subarray(0, Math.floor(png.length / 2))), ImageError);
    const gif = await sharp(raw(3, 10), { raw: { width: 20, height: 10, channels: 3 } })
      .gif()
      .toBuffer();
    await assert.rejects(probeImage(gif), /is gif; pathotype reads TIFF, PNG, JPEG and WebP/);
    const bomb = pngHeaderClaiming(100_000, 100_000);
    await assert.rejects(probeImage(bomb), /100000x100000 .* above the limit/);
    await assert.rejects(decodeRgb(bomb), /above the limit/);
  });
});
