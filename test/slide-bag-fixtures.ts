/**
 * Slide feature tests' set-up: small mosaic slides of development fields (src/acquire/slide-mosaic.ts),
 * imported into a workspace's catalog, and a recipe (a `--config` file over the resnet50-probe
 * preset) whose frozen base is the small ImageNet MobileNet in ../shared/weights, on 32 px tiles.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

import { Catalog } from '../src/acquire/catalog.js';
import { parseGroupRule } from '../src/acquire/grouping.js';
import { importSlideManifest } from '../src/acquire/slide-manifest.js';
import { writePatientSlides } from '../src/acquire/slide-mosaic.js';
import { workspaceAt } from '../src/workspace.js';
import { lymphomaDir, weightsDir } from './helpers.js';

export const MOBILENET = path.join(weightsDir, 'mobilenet_v1_0.25_224_imagenet_tfjs');

/** The recipe's overrides of resnet50-probe: MobileNet v1 0.25 on 32 px tiles at the preset's 1.0667 um/px. */
export const SMALL_RECIPE = {
  prepare: { normalisation: 'none', patchSize: 32, stride: 32 },
  train: { architecture: 'mobilenet_v1', alpha: 0.25, pretrained: MOBILENET },
};

export interface SlideSet {
  slidesDir: string;
  manifest: string;
  recipe: string;
}

/** Mosaic slides of these patients (two each, of alternate fields, `maxFields` each) and the recipe file. */
export async function writeSlideSet(dir: string, patients: string[], maxFields: number): Promise<SlideSet> {
  const slidesDir = path.join(dir, 'slides');
  const { manifest } = await writePatientSlides(lymphomaDir, slidesDir, {
    groupBy: parseGroupRule('patient'),
    patients,
    maxFields,
  });
  const recipe = path.join(dir, 'recipe.json');
  writeFileSync(recipe, JSON.stringify(SMALL_RECIPE));
  return { slidesDir, manifest, recipe };
}

/** A workspace whose catalog holds the set's slides. */
export async function slideWorkspace(root: string, set: SlideSet): Promise<string> {
  const catalog = Catalog.open(workspaceAt(root));
  try {
    await importSlideManifest(catalog, set.manifest);
  } finally {
    catalog.close();
  }
  return root;
}

/** The bag files of a workspace's one encoder, by name, and its extraction log's lines. */
export function bagFolder(root: string): {
  dir: string;
  bags: string[];
  log: { slide: string; pid: number }[];
} {
  const features = path.join(root, 'features');
  const [encoder = ''] = readdirSync(features);
  const dir = path.join(features, encoder, 'slides');
  const log = path.join(dir, 'extractions.jsonl');
  return {
    dir,
    bags: readdirSync(dir)
      .filter((n) => n.endsWith('.h5'))
      .sort(),
    log: existsSync(log)
      ? readFileSync(log, 'utf8')
          .split('\n')
          .filter(Boolean)
          .map((l) => JSON.parse(l) as { slide: string; pid: number })
      : [],
  };
}
