/**
 * Whole-slide inference with the shared predictor: a tissue mask from a low-resolution view
 * (slide-mask.ts), tiles at the model's physical scale (slide-plan.ts: microns per pixel of the
 * slide against the model's), read region by region at the nearest level, resampled, normalised
 * and cut exactly as the model's patches were, batched through the same network
 * (slide-regions.ts), each tile judged by the tile checks, and the vote and calibrated answer
 * on the clear ones (slide-quality.ts). Memory is one region and the per-tile outputs, whatever
 * the slide's size.
 */
import { Slide, type SlideInfo } from '../slide/slide.js';
import { atypicalityOf, type Atypicality } from './atypicality.js';
import { slideInputMeasures, type InputMeasures } from './image-features.js';
import type { Predictor } from './predictor.js';
import type { SlidePredictOptions } from './slide-plan.js';
import { predictTiles } from './slide-regions.js';
import { slideTiles, tileOrigin } from './slide-tiles.js';
import { judgeTiles, verdictOnClearTiles } from './slide-quality.js';
import { rounded, roundedWeight, type Verdict } from './verdict.js';
import { argmax } from './vote.js';

export interface SlideTile {
  /** Level-0 pixel coordinates of the tile's top-left corner, and its side. */
  x: number;
  y: number;
  size: number;
  predicted: number;
  probabilities: number[];
  /** Its focus measure; below the tile limit of the focus check the tile is left out of the slide's answer. */
  focus: number;
  blurred: boolean;
  /** Its optical density over the slide's median tile's; a fold (image/artefacts.ts) is left out too. */
  densityRatio: number;
  folded: boolean;
  /** Under the 'attention' rule: the tile's weight in the slide's answer (0 for a tile left out; they sum to 1). */
  attention?: number;
}

export interface SlidePrediction {
  slide: Pick<SlideInfo, 'path' | 'vendor' | 'width' | 'height' | 'levels'> & { mpp: number };
  model: { name: string; version: number; classes: string[]; mpp: number; rule: string };
  /** The tiling in level-0 pixels: tile side, step, and the grid it spans. */
  tiling: { size: number; stride: number; cols: number; rows: number; level: number };
  /** The share of the slide that is tissue in the mask, the tiles kept, and those of them out of focus or folded. */
  tissue: { fraction: number; tiles: number; blurred: number; folded: number };
  tiles: SlideTile[];
  result: Verdict;
  /** What the slide measured (its tissue tiles' median focus, its stain densities), for the drift page. Absent in older results. */
  inputs?: InputMeasures;
  /** How unlike the training slides it is; null: unknown (a package that kept no reference of slides). Absent in older results. */
  atypicality?: Atypicality | null;
  timings: { totalMs: number; maskMs: number; readMs: number; inferenceMs: number };
}

export async function predictSlide(
  predictor: Predictor,
  file: string,
  options: SlidePredictOptions = {},
): Promise<SlidePrediction> {
  const started = performance.now();
  const slide = await Slide.open(file);
  try {
    const { plan, grid, size0, kept, fraction, stain, maskMs } = await slideTiles(
      slide,
      predictor.manifest.preprocess,
      options,
    );
    const { slideMpp, modelMpp, cols, rows } = plan;
    const { stride0, readLevel } = grid;
    const { outputs, measures, meanFeatures, readMs, inferenceMs } = await predictTiles(
      predictor,
      slide,
      grid,
      kept,
      options,
    );
    const names = predictor.classes;
    const judged = judgeTiles(measures, kept.length);
    const tiles: SlideTile[] = kept.map(([col, row], k) => {
      const quality = judged[k] as (typeof judged)[number];
      const [x, y] = tileOrigin(grid, col, row);
      return {
        x,
        y,
        size: Math.round(size0),
        predicted: argmax(outputs.probabilities, k * names.length, names.length),
        probabilities: Array.from(
          outputs.probabilities.subarray(k * names.length, (k + 1) * names.length),
          rounded,
        ),
        focus: rounded(quality.focus),
        blurred: quality.blurred,
        densityRatio: rounded(quality.densityRatio),
        folded: quality.folded,
      };
    });
    const { verdict, weights } = verdictOnClearTiles(predictor, slide.info, outputs, judged);
    if (weights) for (const [k, tile] of tiles.entries()) tile.attention = roundedWeight(weights[k] ?? 0);
    const { width, height } = slide.info;
    const reference = predictor.reference;
    return {
      slide: {
        path: slide.info.path,
        vendor: slide.info.vendor,
        width,
        height,
        levels: slide.info.levels,
        mpp: slideMpp,
      },
      model: {
        name: predictor.manifest.name,
        version: predictor.manifest.version,
        classes: [...names],
        mpp: modelMpp,
        rule: predictor.options.vote,
      },
      tiling: { size: size0, stride: stride0, cols, rows, level: readLevel },
      tissue: {
        fraction,
        tiles: kept.length,
        blurred: tiles.filter((t) => t.blurred).length,
        folded: tiles.filter((t) => t.folded).length,
      },
      tiles,
      result: verdict,
      inputs: slideInputMeasures(stain, measures.get('focus') ?? []),
      atypicality:
        reference?.unit === 'slides' && meanFeatures
          ? atypicalityOf(reference, meanFeatures, [stain.haematoxylin, stain.eosin])
          : null,
      timings: { totalMs: performance.now() - started, maskMs, readMs, inferenceMs },
    };
  } finally {
    await slide.close();
  }
}
