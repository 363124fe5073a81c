/**
 * Progress on stderr: a bar (cli-progress) on a terminal; elsewhere (a log, CI, nohup) a line
 * every PROGRESS_LINE_SECONDS with done/total, rate and time left, so a long stage is never
 * silent, and nothing at all for a stage shorter than that.
 */
import cliProgress from 'cli-progress';

import type { SlideBagProgress } from '../train/slide-bags.js';
import type { TrainProgress } from '../train/trainer.js';

export interface Progress {
  update(value: number, total?: number, payload?: Record<string, string | number>): void;
  stop(): void;
}

/** How often a progress line is written off a terminal (and how long a stage runs before the first). */
export const PROGRESS_LINE_SECONDS = 10;

/** Where progress goes and what time it is: stderr and the clock, or a test's stand-ins. */
export interface ProgressSink {
  write(text: string): void;
  isTTY: boolean;
  now(): number;
}

const STDERR: ProgressSink = {
  write: (text) => process.stderr.write(text),
  get isTTY() {
    return process.stderr.isTTY;
  },
  now: () => performance.now(),
};

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

/** Seconds as people read them: 42 s, 3 min 5 s, 1 h 20 min. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

/**
 * One progress line: "prepare: 120/295 (40.7%), 3.2 items/s, about 55 s left | patches 3000".
 * The rate is measured over the whole stage so far, so a slow start does not promise too much.
 */
export function progressLine(
  label: string,
  unit: 'items' | 'bytes',
  done: number,
  total: number | undefined,
  elapsedSeconds: number,
  payload: Record<string, string | number> = {},
): string {
  const rate = elapsedSeconds > 0 ? done / elapsedSeconds : 0;
  const show = (n: number): string => (unit === 'bytes' ? formatBytes(n) : String(n));
  const share = total ? ` (${((100 * done) / total).toFixed(1)}%)` : '';
  const speed = unit === 'bytes' ? `${formatBytes(rate)}/s` : `${rate.toFixed(rate < 10 ? 2 : 0)} items/s`;
  const left = total && rate > 0 ? `, about ${formatDuration((total - done) / rate)} left` : '';
  const extra = Object.entries(payload)
    .map(([k, v]) => ` | ${k} ${v}`)
    .join('');
  return `${label}: ${show(done)}/${total ? show(total) : '?'}${share}, ${speed}${left}${extra}\n`;
}

/** Off a terminal: a line when PROGRESS_LINE_SECONDS have passed since the last (or the start). */
function lineProgress(label: string, unit: 'items' | 'bytes', sink: ProgressSink): Progress {
  let started: number | null = null;
  let last: number | null = null;
  let wrote = false;
  let latest: { value: number; total?: number; payload?: Record<string, string | number> } = { value: 0 };
  return {
    update(value, total, payload) {
      const now = sink.now();
      started ??= now;
      last ??= now;
      latest = { value, ...(total !== undefined ? { total } : {}), ...(payload ? { payload } : {}) };
      if ((now - last) / 1000 < PROGRESS_LINE_SECONDS) return;
      last = now;
      wrote = true;
      sink.write(progressLine(label, unit, value, total, (now - started) / 1000, payload));
    },
    stop() {
      // A stage that wrote lines says where it ended; a short one stays silent.
      if (!wrote || started === null) return;
      wrote = false;
      const seconds = (sink.now() - started) / 1000;
      sink.write(progressLine(label, unit, latest.value, latest.total, seconds, latest.payload));
    },
  };
}

function barProgress(label: string, unit: 'items' | 'bytes', extra: string): Progress {
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
      started = false;
    },
  };
}

/** `extra`: the bar's cli-progress fields after the count; off a terminal the payload is listed instead. */
export function progressBar(
  label: string,
  unit: 'items' | 'bytes',
  extra = '',
  sink: ProgressSink = STDERR,
): Progress {
  return sink.isTTY ? barProgress(label, unit, extra) : lineProgress(label, unit, sink);
}

/**
 * The training bar: epoch, running loss and accuracy, patches per second; a frozen-base recipe's
 * feature pass (no loss yet, images not patches) shows its own fields, never zeros in their place.
 */
export function trainBar(sink: ProgressSink = STDERR): { bar: Progress; update: (p: TrainProgress) => void } {
  const bar = progressBar(
    'train',
    'items',
    ' | epoch {epoch} | loss {loss} | acc {acc} | {rate} patches/s',
    sink,
  );
  const features = progressBar('features', 'items', ' | {rate} images/s', sink);
  let featuresStarted: number | null = null;
  const stop = (): void => {
    bar.stop();
    features.stop();
  };
  return {
    bar: { update: (value, total, payload) => bar.update(value, total, payload), stop },
    update: (p) => {
      if (p.pass === 'features') {
        const now = sink.now();
        featuresStarted ??= now;
        const seconds = (now - featuresStarted) / 1000;
        const rate = seconds > 0 ? p.batch / seconds : 0;
        features.update(p.batch, p.batches, { rate: rate.toFixed(1) });
        return;
      }
      bar.update((p.epoch - 1) * p.batches + p.batch, p.epochs * p.batches, {
        epoch: `${p.epoch}/${p.epochs}`,
        loss: p.loss.toFixed(3),
        acc: p.accuracy.toFixed(3),
        rate: p.patchesPerSecond.toFixed(0),
      });
    },
  };
}

/** Slide feature extraction: tiles done of those expected, slides done, tiles per second and time left. */
export function extractionBar(sink: ProgressSink = STDERR): {
  bar: Progress;
  update: (p: SlideBagProgress) => void;
} {
  const bar = progressBar('extract tiles', 'items', ' | slides {slides} | {rate} tiles/s', sink);
  return {
    bar,
    update: (p) =>
      bar.update(p.tiles, Math.max(p.tiles, p.tilesTotal), {
        slides: `${p.slides}/${p.slidesTotal}`,
        rate: p.tilesPerSecond.toFixed(0),
      }),
  };
}
