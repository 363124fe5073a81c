/**
 * A tiny generated 3-class pattern set (blobs, stripes, checkerboards, each with random colour,
 * phase and noise) for engine self-tests and benchmarks: learnable in seconds, needs no files.
 * Every class is closed under flips and quarter turns, so augmentation keeps labels valid.
 */
import { seededRandom } from '../random.js';

export interface PatternSet {
  images: Uint8Array;
  labels: Int32Array;
  size: number;
  count: number;
}

export function makePatternSet(count: number, size: number, seed = 1): PatternSet {
  const random = seededRandom(seed);
  const images = new Uint8Array(count * size * size * 3);
  const labels = new Int32Array(count);
  for (let n = 0; n < count; n++) {
    const label = n % 3;
    labels[n] = label;
    const colour = [random(), random(), random()].map((v) => 80 + v * 175);
    const period = 3 + Math.floor(random() * 4);
    const phase = Math.floor(random() * period);
    const vertical = random() < 0.5;
    const cx = size * (0.3 + 0.4 * random());
    const cy = size * (0.3 + 0.4 * random());
    const radius = size * (0.2 + 0.15 * random());
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        let on: boolean;
        if (label === 0) on = (x - cx) ** 2 + (y - cy) ** 2 < radius ** 2;
        else if (label === 1) on = Math.floor(((vertical ? x : y) + phase) / period) % 2 === 0;
        else on = (Math.floor((x + phase) / period) + Math.floor((y + phase) / period)) % 2 === 0;
        const base = ((n * size + y) * size + x) * 3;
        for (let c = 0; c < 3; c++) {
          const value = (on ? (colour[c] ?? 0) : 40) + (random() - 0.5) * 40;
          images[base + c] = Math.max(0, Math.min(255, Math.round(value)));
        }
      }
    }
  }
  return { images, labels, size, count };
}

/** Images [start, end) of a pattern set as one batch. */
export function sliceBatch(
  set: PatternSet,
  start: number,
  end: number,
): { images: Uint8Array; labels: Int32Array } {
  const bytes = set.size * set.size * 3;
  return { images: set.images.subarray(start * bytes, end * bytes), labels: set.labels.subarray(start, end) };
}
