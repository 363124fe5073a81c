/**
 * `bench slide` runs to the end, small: a mosaic of development fields read by a model 4x coarser
 * than the slide (the benchmark's default), whose tiles are judged at the pixels that model sees.
 * Judged enlarged to the reference scale, every tile of this sharp slide measured out of focus.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { hasShared, lymphomaDir, runCli, type CliResult } from '../helpers.js';
import { tempDir } from '../fixtures.js';

/** `bench slide` on a slide of 10 x 10 fields (4,170 x 3,120 px), as JSON. */
function smallBench(flags: string[]): Promise<CliResult> {
  const slide = path.join(tempDir(), 'bench.tif');
  return runCli([
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
    ...flags,
    '--json',
  ]);
}

describe('pathotype bench slide', () => {
  it(
    'predicts a small generated slide at 4 level-0 pixels per model pixel, its tissue tiles answered',
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const run = await smallBench([]);
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

  it(
    "with --features extracts the slide's bag and measures it against the same tiles in memory",
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const run = await smallBench(['--features']);
      assert.equal(run.code, 0, run.stderr);
      const result = JSON.parse(run.stdout) as {
        tiles: number;
        usable: number;
        dims: number;
        extractTilesPerSecond: number;
        memoryTilesPerSecond: number;
        ratio: number;
        peakRssMb: number;
      };
      assert.ok(result.tiles > 500, `${result.tiles} tissue tiles`);
      assert.ok(result.usable > 0.95 * result.tiles, `${result.usable} of ${result.tiles} kept`);
      assert.ok(result.dims > 0 && result.extractTilesPerSecond > 0 && result.memoryTilesPerSecond > 0);
      assert.ok(Math.abs(result.ratio - result.extractTilesPerSecond / result.memoryTilesPerSecond) < 1e-9);
      assert.ok(result.peakRssMb > 50 && result.peakRssMb < 1500, `${result.peakRssMb} MB`);
    },
  );
});
