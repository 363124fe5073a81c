/** `pathotype predict`: images classified with a model package, answered, uncertain or refused. */
import { mkdirSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { Command } from 'commander';

import { ConfigError } from '../errors.js';
import { decodeRgb } from '../image/image-io.js';
import { scaleOfMpp } from '../image/scale.js';
import { isWholeSlide } from '../slide/slide.js';
import { slideGeoJson } from '../predict/slide-geojson.js';
import { predictSlide, type SlidePrediction } from '../predict/slide-predictor.js';
import { heatmapPng } from '../predict/heatmap.js';
import { verdictCells, verdictColumns } from '../predict/verdict.js';
import { refusedLine, thresholdText, verdictLine, voteSharesText } from '../predict/verdict-text.js';
import { atypicalityText, type Atypicality } from '../predict/atypicality.js';
import {
  DEFAULT_BATCH_SIZE,
  Predictor,
  type ImagePrediction,
  type RefusedImage,
} from '../predict/predictor.js';
import { resolveModelDir } from './context.js';
import { choice, positiveInt, positiveNumber } from './options.js';
import { progressBar } from './progress.js';

function formatPrediction(p: ImagePrediction | RefusedImage): string {
  if (p.status === 'refused') return `${p.name}: ${refusedLine(p.code, p.message)}`;
  const why = p.status === 'uncertain' ? `, refer to a pathologist (${thresholdText(p)})` : '';
  return `${p.name}: ${verdictLine(p)}${why}; ${voteSharesText(p.voteShares)} of ${p.patches} patches${unlikeText(p)}`;
}

/** The atypicality, said only when the input is unlike the training data. */
function unlikeText(p: Pick<ImagePrediction, 'atypicality'>): string {
  return p.atypicality?.unlike ? `; ${atypicalityText(p.atypicality)}` : '';
}

/** A table as CSV, cells quoted where they need it. */
function csvText(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  return [header, ...rows].map((row) => row.map(quote).join(',')).join('\n');
}

/** The atypicality's percentile as a cell (empty: unknown). */
const atypicalityCell = (a: Atypicality | null | undefined): string => (a ? String(a.percentile) : '');

function csv(predictions: (ImagePrediction | RefusedImage)[], classes: string[]): string {
  return csvText(
    ['image', ...verdictColumns(classes), 'atypicality'],
    predictions.map((p) =>
      p.status === 'refused'
        ? [p.name, 'refused', '', p.code]
        : [p.name, ...verdictCells(p, classes), atypicalityCell(p.atypicality)],
    ),
  );
}

function slideCsv(results: readonly SlidePrediction[], classes: string[]): string {
  return csvText(
    ['slide', ...verdictColumns(classes), 'atypicality'],
    results.map((r) => [r.slide.path, ...verdictCells(r.result, classes), atypicalityCell(r.atypicality)]),
  );
}

export function registerPredict(program: Command): void {
  program
    .command('predict <images...>')
    .description('classify images with a model package: class, vote shares, mean probabilities, patch grid')
    .requiredOption('--model <dir>', 'model package directory (or a model name in the workspace)')
    .option(
      '--format <format>',
      'json, csv, text, or geojson (one slide: its tiles as QuPath detections)',
      choice(['json', 'csv', 'text', 'geojson'] as const),
      'text',
    )
    .option('--geojson <dir>', "write each slide's tiles as DIR/NAME.geojson (QuPath detections)")
    .option('--slide-mpp <um>', 'microns per pixel of slides that do not state it', positiveNumber)
    .option(
      '--model-mpp <um>',
      "microns per pixel of the model's patches (default: the original release's 0.32 over the model's scale)",
      positiveNumber,
    )
    .option(
      '--heatmap <dir>',
      'write a PNG overlay per image (patch grid coloured by class, opacity by confidence)',
    )
    .option(
      '--mpp <um>',
      "the images' microns per pixel (default: from the size, as the release's 1388x1040 fields at 0.32 um/px)",
      positiveNumber,
    )
    .option(
      '--scale <x>',
      'the same as a pixel scale relative to the original 1388x1040 release: an alias of --mpp',
      positiveNumber,
    )
    .option('--batch-size <n>', 'patches per inference batch', positiveInt, DEFAULT_BATCH_SIZE)
    .option('--bf16', 'bfloat16 autocast even without native bf16 (default: only where the CPU has it)')
    .option('--no-bf16', 'float32 throughout')
    .action(predictCommand);
}

type PredictFlags = {
  model: string;
  format: 'json' | 'csv' | 'text' | 'geojson';
  geojson?: string;
  slideMpp?: number;
  modelMpp?: number;
  heatmap?: string;
  mpp?: number;
  scale?: number;
  batchSize: number;
  bf16?: boolean;
};

async function predictCommand(images: string[], flags: PredictFlags, command: Command): Promise<void> {
  if (flags.mpp !== undefined && flags.scale !== undefined)
    throw new ConfigError("give the images' resolution once: --mpp or --scale, not both");
  const scale = flags.mpp !== undefined ? scaleOfMpp(flags.mpp) : flags.scale;
  const dir = resolveModelDir(command, flags.model);
  const predictor = await Predictor.load(dir, {
    batchSize: flags.batchSize,
    ...(flags.bf16 !== undefined ? { bf16: flags.bf16 } : {}),
  });
  const slides: string[] = [];
  const fields: string[] = [];
  for (const file of images) ((await isWholeSlide(file)) ? slides : fields).push(file);
  if (slides.length > 0) {
    await predictSlides(predictor, slides, flags, fields.length === 0);
    if (fields.length === 0) return;
  }
  if (flags.format === 'geojson')
    throw new ConfigError(
      `--format geojson is for slides; ${fields.join(', ')} ${fields.length > 1 ? 'are' : 'is'} not`,
    );
  const predictions = await predictor.predictImagesSettled(
    fields.map((file) => ({
      source: path.resolve(file),
      name: file,
      ...(scale ? { scale } : {}),
    })),
  );
  if (flags.heatmap) {
    mkdirSync(flags.heatmap, { recursive: true });
    for (const p of predictions) {
      if (p.status === 'refused') continue;
      const image = await decodeRgb(path.resolve(p.name), {
        width: p.grid.width,
        height: p.grid.height,
      });
      const file = path.join(flags.heatmap, `${path.basename(p.name).replace(/\.[^.]+$/, '')}.heatmap.png`);
      await writeFile(file, await heatmapPng(image, p.grid));
      // A model that pools by attention: each patch's weight in the answer, beside the classes.
      if (p.grid.attention)
        await writeFile(
          file.replace(/\.heatmap\.png$/, '.attention.png'),
          await heatmapPng(image, p.grid, 1400, 'attention'),
        );
    }
  }
  if (flags.format === 'json')
    process.stdout.write(
      `${JSON.stringify(
        {
          model: { name: predictor.manifest.name, version: predictor.manifest.version },
          predictions: predictions.map((p) =>
            p.status === 'refused' ? { name: p.name, status: p.status, code: p.code, message: p.message } : p,
          ),
        },
        null,
        2,
      )}\n`,
    );
  else if (flags.format === 'csv') process.stdout.write(`${csv(predictions, predictor.classes)}\n`);
  else process.stdout.write(`${predictions.map(formatPrediction).join('\n')}\n`);
  // Refused images are in the output in their place; the exit code tells scripts, stderr why.
  const refused = predictions.filter((p) => p.status === 'refused');
  for (const p of refused.slice(0, -1)) process.stderr.write(`pathotype: ${p.message} [${p.code}]\n`);
  const last = refused[refused.length - 1];
  if (last) throw last.error;
}

function formatSlide(p: SlidePrediction): string {
  const r = p.result;
  const why = r.status === 'uncertain' ? `, refer to a pathologist (${thresholdText(r)})` : '';
  return (
    `${p.slide.path}: ${verdictLine(r)}${why}; ${p.tissue.tiles} tissue tiles of ${p.tiling.size.toFixed(0)} px at level 0 ` +
    `(${p.slide.width}x${p.slide.height}, ${p.slide.mpp} um/px; model ${p.model.mpp.toFixed(3)} um/px); ` +
    `${voteSharesText(r.voteShares)} in ${(p.timings.totalMs / 1000).toFixed(1)} s${unlikeText(p)}`
  );
}

/** Whole-slide inference, one slide after another; the slides' own output formats. */
async function predictSlides(
  predictor: Predictor,
  slides: readonly string[],
  flags: { format: string; geojson?: string; slideMpp?: number; modelMpp?: number },
  only: boolean,
): Promise<void> {
  if (flags.format === 'geojson' && !(only && slides.length === 1))
    throw new ConfigError(
      '--format geojson writes one slide to stdout: give one slide, or use --geojson DIR',
    );
  const results: SlidePrediction[] = [];
  for (const file of slides) {
    const bar = progressBar(`slide ${path.basename(file)}`, 'items');
    try {
      results.push(
        await predictSlide(predictor, file, {
          ...(flags.slideMpp ? { slideMpp: flags.slideMpp } : {}),
          ...(flags.modelMpp ? { modelMpp: flags.modelMpp } : {}),
          onProgress: (done, total) => bar.update(done, total),
        }),
      );
    } finally {
      bar.stop();
    }
  }
  if (flags.geojson) {
    mkdirSync(flags.geojson, { recursive: true });
    for (const r of results) {
      const file = path.join(flags.geojson, `${path.basename(r.slide.path).replace(/\.[^.]+$/, '')}.geojson`);
      await writeFile(file, `${JSON.stringify(slideGeoJson(r))}\n`);
    }
  }
  if (flags.format === 'geojson')
    process.stdout.write(`${JSON.stringify(slideGeoJson(results[0] as SlidePrediction))}\n`);
  else if (flags.format === 'json') process.stdout.write(`${JSON.stringify({ slides: results }, null, 2)}\n`);
  else if (flags.format === 'csv') process.stdout.write(`${slideCsv(results, predictor.classes)}\n`);
  else process.stdout.write(`${results.map(formatSlide).join('\n')}\n`);
}
