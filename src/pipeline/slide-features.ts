/**
 * The catalog's slides as feature bags for a recipe (train/slide-bags.ts): extracted on this
 * machine, or (with a database) spread over every feature worker on the shared PostgreSQL, this
 * process one of them (feature-queue.ts); then read from the shared cache with their quality.
 */
import type { SlideRecord } from '../acquire/catalog.js';
import { extractSlideBags, type SlideBagProgress, type SlideBagsResult } from '../train/slide-bags.js';
import type { Workspace } from '../workspace.js';
import { extractOnQueue } from './feature-queue.js';
import type { Preset } from './presets.js';
import { openSlideEncoder, slideClasses } from './slide-encoder.js';

export interface SlideFeatureOptions {
  workspace: Workspace;
  slides: readonly SlideRecord[];
  preset: Preset;
  /** Default: the slides' labels. */
  classes?: readonly string[];
  /** A shared PostgreSQL: the slides are spread over every worker on it, this process one of them. */
  database?: string;
  minUsableTiles?: number;
  onProgress?: (p: SlideBagProgress) => void;
  onNotice?: (message: string) => void;
  signal?: AbortSignal;
}

/**
 * Every slide's bag for the recipe, extracted here or (with a database) by whichever worker takes
 * it, then read from the cache with its quality: the slides too poor to train on in `excluded`.
 */
export async function extractSlideFeatures(
  options: SlideFeatureOptions,
): Promise<SlideBagsResult & { encoder: string; classes: string[] }> {
  const classes = options.classes ? [...options.classes] : slideClasses(options.slides);
  const encoder = await openSlideEncoder(
    options.workspace,
    options.preset,
    classes,
    options.onNotice ? { onNotice: options.onNotice } : {},
  );
  try {
    const request = {
      workspace: options.workspace,
      slides: options.slides,
      classes,
      preprocess: encoder.preprocess,
      features: encoder.base.features,
      ...(options.minUsableTiles !== undefined ? { minUsableTiles: options.minUsableTiles } : {}),
      ...(options.signal ? { signal: options.signal } : {}),
    };
    let queued = 0;
    if (options.database)
      ({ queued } = await extractOnQueue(options.database, options.preset, encoder, request, {
        ...(options.onProgress ? { onProgress: options.onProgress } : {}),
        ...(options.onNotice ? { onNotice: options.onNotice } : {}),
      }));
    const result = await extractSlideBags({
      ...request,
      ...(options.onProgress ? { onProgress: options.onProgress } : {}),
    });
    return {
      ...result,
      extracted: result.extracted + queued,
      cached: result.cached - queued,
      encoder: encoder.base.features.cacheKey,
      classes,
    };
  } finally {
    await encoder.close();
  }
}
