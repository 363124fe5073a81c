/**
 * Slide feature extraction's progress: slides done, tiles per second over this run's extraction,
 * and the time left from the tiles still expected (those of slides not yet masked estimated by
 * their area at the tissue density seen so far).
 */
import type { SlideRecord } from '../acquire/catalog.js';

export interface SlideBagProgress {
  /** Slides finished (extracted, found in the cache, or left out) of slidesTotal. */
  slides: number;
  slidesTotal: number;
  /** Tiles extracted in this run, and their rate. */
  tiles: number;
  tilesPerSecond: number;
  /** Time left, from the rate and the tiles still expected (estimated from the slides' sizes). */
  etaSeconds: number;
  /** Tiles this run is expected to extract in all (an estimate until the last slide's mask). */
  tilesTotal: number;
}

/**
 * Progress over the slides: tiles per second over this run's extraction, and the time left from
 * the tiles still expected, those of slides not yet masked estimated by their area at the
 * tissue density seen so far.
 */
export function progressMeter(
  onProgress: ((p: SlideBagProgress) => void) | undefined,
  slides: readonly SlideRecord[],
): { tiles: (slide: number, done: number, total: number) => void; slideDone: (slide: number) => void } {
  const area = (s: SlideRecord): number => s.width * s.height;
  let started: number | null = null;
  let finished = 0;
  let tilesBefore = 0;
  let areaBefore = 0;
  let current = { slide: -1, done: 0, total: 0 };
  const report = (): void => {
    if (!onProgress) return;
    const tiles = tilesBefore + current.done;
    const seconds = started === null ? 0 : (performance.now() - started) / 1000;
    const rate = seconds > 0 ? tiles / seconds : 0;
    const seenArea = areaBefore + (current.slide >= 0 ? area(slides[current.slide] as SlideRecord) : 0);
    const density = seenArea > 0 ? (tilesBefore + current.total) / seenArea : 0;
    const after = slides.slice(Math.max(finished, current.slide + 1)).reduce((a, s) => a + area(s), 0);
    const left = current.total - current.done + density * after;
    onProgress({
      slides: finished,
      slidesTotal: slides.length,
      tiles,
      tilesPerSecond: rate,
      etaSeconds: rate > 0 ? left / rate : 0,
      tilesTotal: Math.round(tiles + left),
    });
  };
  return {
    tiles: (slide, done, total) => {
      started ??= performance.now();
      current = { slide, done, total };
      report();
    },
    slideDone: (slide) => {
      if (current.slide === slide) {
        tilesBefore += current.done;
        areaBefore += area(slides[slide] as SlideRecord);
        current = { slide: -1, done: 0, total: 0 };
      }
      finished = slide + 1;
      report();
    },
  };
}
