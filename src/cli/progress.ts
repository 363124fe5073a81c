/** Progress bars on stderr (cli-progress); silent when stderr is not a terminal. */
import cliProgress from 'cli-progress';

import type { TrainProgress } from '../train/trainer.js';

export interface Progress {
  update(value: number, total?: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let unit = -1;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(1)} ${units[unit] ?? ''}`;
}

export { formatBytes };

export function progressBar(label: string, unit: 'items' | 'bytes', extra = ''): Progress {
  const enabled = process.stderr.isTTY;
  if (!enabled) return { update: () => undefined, stop: () => undefined };
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format:
        unit === 'bytes'
          ? `${label} [{bar}] {percentage}% {done}/{all} | ETA {eta_formatted}`
          : `${label} [{bar}] {value}/{total} | ETA {eta_formatted}${extra}`,
      hideCursor: true,
      etaBuffer: 50,
    },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update(value, total, payload = {}) {
      const all = total ?? 0;
      const fields =
        unit === 'bytes'
          ? { done: formatBytes(value), all: total ? formatBytes(total) : '?', ...payload }
          : payload;
      if (!started) {
        bar.start(all, value, fields);
        started = true;
      } else {
        if (total !== undefined) bar.setTotal(total);
        bar.update(value, fields);
      }
    },
    stop() {
      if (started) bar.stop();
    },
  };
}

/** The training bar: epoch, running loss and accuracy, patches per second. */
export function trainBar(): { bar: Progress; update: (p: TrainProgress) => void } {
  const bar = progressBar('train', 'items', ' | epoch {epoch} | loss {loss} | acc {acc} | {rate} patches/s');
  return {
    bar,
    update: (p) =>
      bar.update((p.epoch - 1) * p.batches + p.batch, p.epochs * p.batches, {
        epoch: `${p.epoch}/${p.epochs}`,
        loss: p.loss.toFixed(3),
        acc: p.accuracy.toFixed(3),
        rate: p.patchesPerSecond.toFixed(0),
      }),
  };
}
