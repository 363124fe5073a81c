import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { classColour, NOT_ANALYSED_RGBA, overlayPixels } from '../../src/predict/heatmap.js';
import type { PatchGrid } from '../../src/predict/predictor.js';
import { verdictLine } from '../../src/predict/verdict-text.js';

/** A 2x2 grid of 10 px patches over a 25x23 image: 5 and 3 px margins no patch covers. */
const GRID: PatchGrid = {
  cols: 2,
  rows: 2,
  patchSize: 10,
  stride: 10,
  width: 25,
  height: 23,
  cells: [
    [0, 0, 0, 1],
    [1, 0, 1, 1],
    [0, 1, 1, 1],
    [1, 1, 0, 1],
  ],
};

function pixel(out: Uint8Array, x: number, y: number): number[] {
  const i = (y * GRID.width + x) * 4;
  return [...out.subarray(i, i + 4)];
}

describe('the patch heatmap', () => {
  it('fills each patch edge to edge in its class colour: no seams between neighbours', () => {
    const out = overlayPixels(GRID, 0.5);
    for (const [col, row, cls] of GRID.cells)
      for (const [dx, dy] of [
        [0, 0],
        [9, 0],
        [0, 9],
        [5, 5],
      ] as const)
        assert.deepEqual(
          pixel(out, col * 10 + dx, row * 10 + dy),
          [...classColour(cls), 128],
          `${col},${row}`,
        );
  });

  it('hatches what no patch covered as not analysed, never leaves it blank', () => {
    const out = overlayPixels(GRID, 0.5);
    const margin: number[][] = [];
    for (let y = 0; y < GRID.height; y++)
      for (let x = 0; x < GRID.width; x++) if (x >= 20 || y >= 20) margin.push(pixel(out, x, y));
    const hatched = margin.filter((p) => p.join() === NOT_ANALYSED_RGBA.join()).length;
    const clear = margin.filter((p) => p[3] === 0).length;
    assert.equal(
      hatched + clear,
      margin.length,
      'the margin holds only hatching and gaps between its strokes',
    );
    assert.ok(hatched > margin.length / 8, `hatched ${hatched} of ${margin.length}`);
  });
});

describe('the written verdict', () => {
  it('names the calibrated confidence, the class leaned to, and an uncalibrated number as such', () => {
    assert.equal(
      verdictLine({ status: 'answered', predicted: 'FL', confidence: 0.857, threshold: 0.6 }),
      'FL, 85.7% calibrated confidence',
    );
    assert.equal(
      verdictLine({ status: 'uncertain', predicted: 'FL', confidence: 0.512, threshold: 0.6 }),
      'uncertain (leans FL), 51.2% calibrated confidence',
    );
    assert.equal(
      verdictLine({ status: 'answered', predicted: 'CLL', confidence: 0.7, threshold: null }),
      'CLL, 70.0% confidence (uncalibrated)',
    );
  });
});
