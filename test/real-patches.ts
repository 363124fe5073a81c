/** Real patches for engine comparisons: `count` boxes of `size` px cut from the 0.3x development images. */
import { readdirSync } from 'node:fs';
import path from 'node:path';

import sharp from 'sharp';

import { lymphomaDir } from './helpers.js';

export async function realPatches(count: number, size: number): Promise<Uint8Array> {
  const files = ['CLL', 'FL', 'MCL'].flatMap((c) =>
    readdirSync(path.join(lymphomaDir, c))
      .filter((f) => f.endsWith('.png'))
      .sort()
      .map((f) => path.join(lymphomaDir, c, f)),
  );
  const out = new Uint8Array(count * size * size * 3);
  for (let i = 0; i < count; i++) {
    // Spread over the classes and over each image: every 7th image, at a position that moves.
    const file = files[(i * 7) % files.length] ?? '';
    const left = (i * 37) % (417 - size);
    const top = (i * 53) % (312 - size);
    const patch = await sharp(file)
      .extract({ left, top, width: size, height: size })
      .removeAlpha()
      .raw()
      .toBuffer();
    out.set(patch, i * size * size * 3);
  }
  return out;
}
