/**
 * `bench slide` runs to the end, small: a mosaic of development fields read by a model 4x coarser
 * than the slide (the benchmark's default), whose tiles are judged at the pixels that model sees.
 * Judged enlarged to the reference scale, every tile of this sharp slide measured out of focus.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { hasShared, lymphomaDir, runCli } from '../helpers.js';
import { tempDir } from '../fixtures.js';

describe('pathotype bench slide', () => {
  it(
    'predicts a small generated slide at 4 level-0 pixels per model pixel, its tissue tiles answered',
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const slide = path.join(tempDir(), 'bench.tif');
      const run = await runCli([
        'bench',
        'slide',
        '--images',
        lymphomaDir,
        '--slide',
        slide,
        '--across',
        '10',
        '--down',
        '10',
        '--json',
      ]);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as { tiles: number; answered: number; slide: { width: number } };
      assert.equal(result.slide.width, 4170);
      assert.ok(result.tiles > 500, `${result.tiles} tissue tiles`);
      assert.ok(
        result.answered > 0.95 * result.tiles,
        `${result.answered} of ${result.tiles} tiles answered`,
      );
    },
  );
});
