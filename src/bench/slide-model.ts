/**
 * What both `bench slide` workers share: the benchmark's model (random weights: speed and memory
 * do not depend on them) at `modelScale` level-0 pixels per model pixel, and the image path's
 * input: a slide's tiles read into memory first, at the level the slide path reads. The model is
 * a small CNN on 32 px tiles (reads weigh most: the slide path's worst case), or the frozen-base
 * presets' ResNet50 cut after res4 on 96 px tiles (the network weighs most: what training runs).
 */
import { buildSpec } from '../engine/zoo.js';
import { PACKAGE_FORMAT, type ModelManifest } from '../model/package.js';
import { Slide } from '../slide/slide.js';

export const BENCH_BASES = ['small_cnn', 'resnet50'] as const;
export type BenchBase = (typeof BENCH_BASES)[number];

const PATCH: Record<BenchBase, number> = { small_cnn: 32, resnet50: 96 };

/** The benchmark model's package manifest: the slide is at the 0.3x copy's scale, the model sees it modelScale times coarser. */
export function benchSlideManifest(modelScale: number, base: BenchBase = 'small_cnn'): ModelManifest {
  const patchSize = PATCH[base];
  const head = { classes: 3, pooling: 'avg', hidden: [], dropout: 0 } as const;
  const spec =
    base === 'resnet50'
      ? buildSpec('resnet50', { inputSize: patchSize, depth: 'res4', head })
      : buildSpec('small_cnn', { inputSize: patchSize, head: { classes: 3 } });
  return {
    format: PACKAGE_FORMAT,
    name: 'bench-slide',
    version: 1,
    spec,
    classes: ['CLL', 'FL', 'MCL'],
    preprocess: {
      normaliser: { method: 'none' },
      targetScale: 0.3005 / modelScale,
      tiles: { patchSize, stride: patchSize },
      background: { enabled: false, brightness: 220, maxFraction: 0.5 },
    },
    vote: 'mean',
  } as unknown as ModelManifest;
}

/** The tiles (level-0 top-left corners, `size0` a side) as patches in memory, read at `level` (its pixels the model's). */
export async function tilesInMemory(
  file: string,
  level: number,
  tiles: readonly { x: number; y: number }[],
  size0: number,
  patchSize: number,
): Promise<Uint8Array> {
  const slide = await Slide.open(file);
  try {
    const ds = slide.info.levels[level]?.downsample ?? 1;
    const bytes = patchSize * patchSize * 3;
    const patches = new Uint8Array(tiles.length * bytes);
    const side = Math.round(size0 / ds);
    for (const [k, tile] of tiles.entries()) {
      const region = await slide.readRegion({ x: tile.x, y: tile.y, level, width: side, height: side });
      if (side === patchSize) patches.set(region.data, k * bytes);
    }
    return patches;
  } finally {
    await slide.close();
  }
}
