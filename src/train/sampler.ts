/**
 * The order in which an epoch visits the training patches: shuffled, optionally class-balanced
 * (each class drawn equally often), optionally capped. Seeded per epoch, so a resumed run sees
 * the same order as an uninterrupted one.
 */
import { seededRandom } from '../random.js';

export function epochOrder(
  ids: Int32Array,
  classOf: (id: number) => number,
  classes: number,
  options: { balance: boolean; limit: number; seed: number },
): Int32Array {
  const random = seededRandom(options.seed);
  const size = options.limit > 0 ? Math.min(options.limit, ids.length) : ids.length;
  if (!options.balance) {
    const order = Int32Array.from(ids);
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      const t = order[i] ?? 0;
      order[i] = order[j] ?? 0;
      order[j] = t;
    }
    return order.subarray(0, size);
  }
  const byClass: number[][] = Array.from({ length: classes }, () => []);
  for (const id of ids) byClass[classOf(id)]?.push(id);
  const present = byClass.filter((list) => list.length > 0);
  const out = new Int32Array(size);
  for (let i = 0; i < size; i++) {
    const list = present[i % present.length] ?? [];
    out[i] = list[Math.floor(random() * list.length)] ?? 0;
  }
  // Interleaved by class above; shuffle so batches mix classes at random.
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = out[i] ?? 0;
    out[i] = out[j] ?? 0;
    out[j] = t;
  }
  return out;
}

/** Loss weights inversely proportional to class frequency, averaging 1. */
export function inverseFrequencyWeights(
  ids: Int32Array,
  classOf: (id: number) => number,
  classes: number,
): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const id of ids) counts[classOf(id)] = (counts[classOf(id)] ?? 0) + 1;
  const present = counts.filter((c) => c > 0).length;
  return counts.map((c) => (c > 0 ? ids.length / (present * c) : 0));
}
