/** One epoch in a line, as the CLI and the data-parallel ranks report it. */
import { percent } from '../format.js';
import type { EpochRecord } from '../model/package.js';

export function epochLine(e: EpochRecord): string {
  const validation =
    e.validationImageAccuracy === undefined
      ? ''
      : `, validation image accuracy ${percent(e.validationImageAccuracy)}`;
  return `epoch ${e.epoch}: loss ${e.loss.toFixed(3)}, patch accuracy ${percent(e.accuracy)}${validation} (${e.patchesPerSecond.toFixed(0)} patches/s, ${e.seconds.toFixed(0)} s)`;
}
