/**
 * Slide features: `pathotype data features` extracts the catalog's slides into feature bags for a
 * recipe (here, or spread over workers with --database) and prints each slide's quality and the
 * slides left out; `pathotype workers features` is a worker on each further machine.
 */
import path from 'node:path';

import type { Command } from 'commander';

import { ConfigError } from '../errors.js';
import { percent } from '../format.js';
import { runFeatureWorker } from '../pipeline/feature-queue.js';
import { presetNames } from '../pipeline/presets.js';
import { resolvePreset } from '../pipeline/run.js';
import { extractSlideFeatures } from '../pipeline/slide-features.js';
import {
  slideBagDir,
  type SlideBagProgress,
  type SlideBagsResult,
  type SlideQuality,
} from '../train/slide-bags.js';
import { workspaceAt } from '../workspace.js';
import { print, withCatalog } from './context.js';
import { nonNegativeInt, positiveInt } from './options.js';
import { progressBar } from './progress.js';
import { addRecipeOptions } from './recipe-options.js';
import { runOverrides } from './run.js';

/** The extraction's progress: tiles done of those expected, slides done, tiles per second. */
function featureBar(): { update: (p: SlideBagProgress) => void; stop: () => void } {
  const bar = progressBar('features', 'items', ' | slides {slides} | {rate} tiles/s');
  return {
    update: (p) =>
      bar.update(p.tiles, Math.max(p.tiles, p.tilesTotal), {
        slides: `${p.slides}/${p.slidesTotal}`,
        rate: p.tilesPerSecond.toFixed(0),
      }),
    stop: () => bar.stop(),
  };
}

/** A slide's quality in one line: tissue, tiles, what each check refused, what the annotations left out. */
export function qualityLine(q: SlideQuality): string {
  const refused = Object.entries(q.refused)
    .filter(([, n]) => n > 0)
    .map(([name, n]) => `${name} ${n} (${percent(n / Math.max(1, q.tiles))})`);
  return (
    `${q.tissueMm2.toFixed(2)} mm^2 of tissue, ${q.usable} usable of ${q.tiles} tissue tiles` +
    (refused.length > 0 ? `; refused: ${refused.join(', ')}` : '') +
    (q.outsideAnnotations > 0 ? `; ${q.outsideAnnotations} outside the annotations` : '')
  );
}

function featuresText(result: SlideBagsResult & { encoder: string }, dir: string): string {
  return [
    `features of ${result.bags.length + result.excluded.length} slides in ${dir}: ${result.extracted} extracted, ${result.cached} already there`,
    ...result.bags.map((b) => `  ${b.slide.path}: ${qualityLine(b.quality)}`),
    ...result.excluded.map((e) => `  left out ${e.slide.path}: ${e.reason}`),
  ].join('\n');
}

/** SIGINT and SIGTERM stop the work between regions (a bag half written is left for the next run to drop). */
function stopOnSignals(): AbortController {
  const controller = new AbortController();
  const stop = (): void => controller.abort();
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  return controller;
}

function registerDataFeatures(data: Command): void {
  const command = data
    .command('features')
    .description(
      "extract the catalog's slides into feature bags for a recipe (tiles on the predictor's grid, the frozen base once per slide, cached); print each slide's quality and the slides left out",
    )
    .requiredOption('--preset <name>', presetNames().join(', '))
    .option('--config <file>', 'overrides of the preset: { prepare, train } (JSON or YAML)')
    .option(
      '--database <url>',
      'a shared PostgreSQL (postgres://...): one job per slide, taken by this process and every `workers features` on it',
    )
    .option('--min-tiles <n>', 'leave out slides with fewer usable tiles (default 16)', positiveInt)
    .option('--json', 'print the result as JSON');
  addRecipeOptions(command, 'preset').action(
    async (
      flags: { preset: string; config?: string; database?: string; minTiles?: number; json?: boolean },
      command: Command,
    ) => {
      const preset = resolvePreset(flags.preset, runOverrides(command, flags));
      await withCatalog(command, async (catalog, workspace) => {
        const slides = catalog.slides();
        if (slides.length === 0)
          throw new ConfigError('the catalog has no slides: run pathotype data import MANIFEST.csv first');
        const bar = featureBar();
        const controller = stopOnSignals();
        try {
          const result = await extractSlideFeatures({
            workspace,
            slides,
            preset,
            ...(flags.database ? { database: flags.database } : {}),
            ...(flags.minTiles ? { minUsableTiles: flags.minTiles } : {}),
            onProgress: bar.update,
            onNotice: (m) => process.stderr.write(`data features: ${m}\n`),
            signal: controller.signal,
          });
          bar.stop();
          print(flags.json, result, () => featuresText(result, slideBagDir(workspace, result.encoder)));
        } finally {
          bar.stop();
        }
      });
    },
  );
}

function registerWorkers(program: Command): void {
  program
    .command('workers')
    .description('work for other machines')
    .command('features')
    .description(
      "a slide feature worker: takes one slide at a time from the shared PostgreSQL's queue (`data features --database`) and writes its bag to the workspace (shared by every machine)",
    )
    .requiredOption('--database <url>', 'the shared PostgreSQL (postgres://...)')
    .option(
      '--idle-exit <s>',
      'stop after this many seconds without a job (default: run until stopped)',
      nonNegativeInt,
    )
    .action(async (flags: { database: string; idleExit?: number }, command: Command) => {
      const { workspace: dir } = command.optsWithGlobals<{ workspace: string }>();
      const controller = stopOnSignals();
      const bar = featureBar();
      const say = (text: string): void => {
        bar.stop();
        process.stderr.write(`workers features: ${text}\n`);
      };
      const { jobs } = await runFeatureWorker({
        workspace: workspaceAt(dir),
        database: flags.database,
        ...(flags.idleExit !== undefined ? { idleExitSeconds: flags.idleExit } : {}),
        signal: controller.signal,
        onProgress: bar.update,
        onNotice: say,
        onJob: (slide, state, error) =>
          say(`${path.basename(slide.path)}: ${state}${error instanceof Error ? `: ${error.message}` : ''}`),
      });
      bar.stop();
      say(`stopped after ${jobs} slides`);
    });
}

export function registerFeatures(program: Command): void {
  const data = program.commands.find((c) => c.name() === 'data');
  if (data) registerDataFeatures(data);
  registerWorkers(program);
}
