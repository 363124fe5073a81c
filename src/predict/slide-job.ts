/**
 * One slide job's work and its results on disk: the prediction (tiles included), the class
 * overlay (and the attention map of a model that pools by attention) as PNG and as a Deep Zoom
 * pyramid, all in the job's folder. The queue that runs it knows nothing
 * of slides; the server reads the results back from here.
 */
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import sharp from 'sharp';

import { DZ_OVERLAP, DZ_TILE_SIZE } from '../slide/deep-zoom.js';
import { ensureDir } from '../workspace.js';
import type { Predictor } from './predictor.js';
import { slideOverlayPng } from './slide-heatmap.js';
import { predictSlide, type SlidePrediction } from './slide-predictor.js';

const PREDICTION_FILE = 'prediction.json';
/** How often progress is reported: every few hundred tiles is plenty for a polling client. */
const PROGRESS_STEP = 256;

/**
 * Predicts the slide and writes its results into `dir`. Returns the summary a job record keeps
 * (the prediction without its tiles).
 */
export async function executeSlideJob(
  predictor: Predictor,
  job: { slidePath: string; slideMpp: number | null },
  dir: string,
  signal: AbortSignal,
  onProgress: (done: number, total: number) => void,
): Promise<Omit<SlidePrediction, 'tiles'>> {
  let last = 0;
  // Per model: a restart with another model must not reuse this one's outputs.
  const checkpointDir = path.join(dir, 'regions', `${predictor.manifest.name}@${predictor.manifest.version}`);
  const prediction = await predictSlide(predictor, job.slidePath, {
    ...(job.slideMpp ? { slideMpp: job.slideMpp } : {}),
    signal,
    checkpointDir,
    onProgress: (done, total) => {
      if (done === total || done - last >= PROGRESS_STEP) {
        last = done;
        onProgress(done, total);
      }
    },
  });
  ensureDir(dir);
  const file = path.join(dir, PREDICTION_FILE);
  await writeFile(`${file}.tmp`, JSON.stringify(prediction));
  await rename(`${file}.tmp`, file);
  rmSync(path.join(dir, 'regions'), { recursive: true, force: true });
  await writeOverlay(dir, 'heatmap', await slideOverlayPng(prediction, 'classes'));
  if (prediction.tiles.some((t) => t.attention !== undefined))
    await writeOverlay(dir, 'attention', await slideOverlayPng(prediction, 'attention'));
  const summary: Omit<SlidePrediction, 'tiles'> & { tiles?: unknown } = { ...prediction };
  delete summary.tiles;
  return summary;
}

/** An overlay as `<name>.png` and as the Deep Zoom pyramid `<name>.dzi`, `<name>_files/`. */
async function writeOverlay(dir: string, name: string, overlay: { png: Buffer }): Promise<void> {
  await writeFile(path.join(dir, `${name}.png`), overlay.png);
  rmSync(path.join(dir, `${name}_files`), { recursive: true, force: true });
  // At the overlay's own resolution: a viewer stretches it over the slide's width.
  await sharp(overlay.png)
    .png()
    .tile({ size: DZ_TILE_SIZE, overlap: DZ_OVERLAP, layout: 'dz' })
    .toFile(path.join(dir, name));
}

/** The full prediction a finished job wrote; undefined while it has none. */
export function readSlideResult(dir: string): SlidePrediction | undefined {
  const file = path.join(dir, PREDICTION_FILE);
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as SlidePrediction) : undefined;
}
