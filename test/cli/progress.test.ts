import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { PROGRESS_LINE_SECONDS, progressBar, trainBar, type ProgressSink } from '../../src/cli/progress.js';

/** Stderr off a terminal, on a clock the test moves. */
function fakeSink(): ProgressSink & { lines: string[]; advance(seconds: number): void } {
  let now = 0;
  const lines: string[] = [];
  return {
    lines,
    isTTY: false,
    now: () => now,
    write: (text) => lines.push(text.trimEnd()),
    advance(seconds) {
      now += seconds * 1000;
    },
  };
}

describe('progress off a terminal', () => {
  it('writes periodic lines with done/total, rate and time left for a long stage', () => {
    const sink = fakeSink();
    const bar = progressBar('prepare', 'items', '', sink);
    bar.update(0, 100);
    sink.advance(PROGRESS_LINE_SECONDS);
    bar.update(20, 100, { patches: 400 });
    sink.advance(PROGRESS_LINE_SECONDS);
    bar.update(40, 100, { patches: 800 });
    bar.stop();
    assert.deepEqual(sink.lines.slice(0, 2), [
      `prepare: 20/100 (20.0%), 2.00 items/s, about 40 s left | patches 400`,
      `prepare: 40/100 (40.0%), 2.00 items/s, about 30 s left | patches 800`,
    ]);
    assert.equal(sink.lines.length, 3, 'and a last line where it stopped');
  });

  it('stays silent for a stage shorter than one interval', () => {
    const sink = fakeSink();
    const bar = progressBar('import', 'items', '', sink);
    for (let i = 1; i <= 10; i++) {
      sink.advance(0.1);
      bar.update(i, 10);
    }
    bar.stop();
    assert.deepEqual(sink.lines, []);
  });

  it("shows a frozen-base feature pass's own figures, not a loss and rate of zero", () => {
    const sink = fakeSink();
    const { bar, update } = trainBar(sink);
    const pass = {
      pass: 'features',
      epoch: 1,
      epochs: 1,
      phase: 1,
      batches: 50,
      loss: 0,
      accuracy: 0,
    } as const;
    const rest = { learningRate: 0, patchesPerSecond: 0, etaSeconds: 0 };
    update({ ...pass, batch: 0, ...rest });
    sink.advance(PROGRESS_LINE_SECONDS);
    update({ ...pass, batch: 25, ...rest });
    bar.stop();
    assert.match(
      sink.lines[0] ?? '',
      /^features: 25\/50 \(50\.0%\), 2\.50 items\/s, about 10 s left \| rate 2\.5$/,
    );
    assert.doesNotMatch(sink.lines.join('\n'), /loss|acc/);
  });
});
