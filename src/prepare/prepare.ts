/**
 * `pathotype prepare`: every catalogued image, normalised and tiled into a patch store, on all
 * cores (worker threads). Images are handed out a few at a time and written in catalog order,
 * so memory stays bounded and the store is the same for the same inputs.
 */
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import path from 'node:path';

import { Piscina } from 'piscina';

import { availableCores } from '../cpu.js';
import { ConfigError, PathotypeError } from '../errors.js';
import type { Catalog, ImageRecord, Partition } from '../acquire/catalog.js';
import { decodeRgb, type RgbImage } from '../image/image-io.js';
import { mppOfScale } from '../image/scale.js';
import { MAX_UPSAMPLING } from '../image/resampling.js';
import { fitNormaliser } from '../image/normalise.js';
import {
  PATCH_STORE_FORMAT,
  PatchStore,
  PatchStoreError,
  PatchStoreWriter,
  type PatchStoreManifest,
  type StoredImage,
} from './patch-store.js';
import type { PrepareTask } from './prepare-worker.js';
import { checkRecipeGeometry } from './geometry.js';
import { validatePreprocess, type PreprocessConfig, type PreprocessedImage } from '../image/preprocess.js';
import { recipeParts, resolvePrepareRecipe, type PrepareRecipeInput } from './recipe.js';
import type { Workspace } from '../workspace.js';

export interface PrepareOptions {
  /** Store name under workspace/patches. */
  name: string;
  /** Split whose partitions and folds the index records; none when absent. */
  split?: string;
  /** How images become patches; validated, and its defaults filled, here. */
  recipe: PrepareRecipeInput;
  threads?: number;
  /** Rebuild even when a store with the same fingerprint exists. */
  force?: boolean;
  onProgress?: (done: number, total: number, patches: number) => void;
}

export interface PrepareReport {
  manifest: PatchStoreManifest;
  dir: string;
  reused: boolean;
  skipped: { path: string; reason: string }[];
  seconds: number;
}

/** A reference given as a path, or as a catalogued image's CLASS/file name. */
function resolveReference(catalog: Catalog, reference: string): string {
  if (existsSync(reference)) return path.resolve(reference);
  const match = catalog
    .images()
    .find((i) => `${i.className}/${i.fileName}` === reference || i.fileName === reference);
  if (!match)
    throw new ConfigError(
      `the reference image '${reference}' is neither a file nor a catalogued CLASS/file name`,
    );
  return match.path;
}

/**
 * The reference for Reinhard or Macenko: one image (a path or CLASS/file), or 'dataset': up to 40
 * training images spread over the catalog, whose average statistics become the target.
 */
async function loadReference(
  catalog: Catalog,
  reference: string | undefined,
  partitions: Map<number, { partition: Partition | null; fold: number | null }>,
): Promise<RgbImage | RgbImage[] | undefined> {
  if (!reference) return undefined;
  if (reference !== 'dataset') return decodeRgb(resolveReference(catalog, reference));
  const all = catalog.images();
  const train = all.filter((i) => partitions.get(i.id)?.partition === 'train');
  // Held-out images never shape the reference; without a holdout split, every image does.
  const training = train.length > 0 ? train : all;
  const step = Math.max(1, Math.floor(training.length / 40));
  const chosen = training.filter((_, k) => k % step === 0).slice(0, 40);
  return Promise.all(chosen.map((i) => decodeRgb(i.path)));
}

export function fingerprint(
  images: readonly ImageRecord[],
  partitions: Map<number, { partition: Partition | null; fold: number | null }>,
  config: PreprocessConfig,
): string {
  const hash = createHash('sha1');
  for (const image of [...images].sort((a, b) => a.sha1.localeCompare(b.sha1))) {
    const p = partitions.get(image.id);
    hash.update(
      `${image.sha1}\t${image.className}\t${image.caseId}\t${p?.partition ?? ''}\t${p?.fold ?? ''}\n`,
    );
  }
  // mpp is derived from targetScale: left out, so stores made before it was written keep their fingerprint.
  hash.update(JSON.stringify({ ...config, mpp: undefined }));
  return hash.digest('hex');
}

/** An existing store, unless it is damaged or of an older format (without measures): then it is rebuilt. */
function openReusable(dir: string): PatchStore | undefined {
  try {
    const store = PatchStore.open(dir);
    return store.manifest.format === PATCH_STORE_FORMAT ? store : undefined;
  } catch (error) {
    if (error instanceof PatchStoreError) return undefined;
    throw error;
  }
}

type Partitions = Map<number, { partition: Partition | null; fold: number | null }>;

/** Each image's partition and fold in the split; empty without one. */
function partitionsOf(catalog: Catalog, split: string | undefined): Partitions {
  const partitions: Partitions = new Map();
  if (!split) return partitions;
  if (!catalog.split(split))
    throw new ConfigError(`there is no split '${split}': run pathotype data split first`);
  for (const m of catalog.splitMembers(split))
    partitions.set(m.imageId, { partition: m.partition, fold: m.fold });
  return partitions;
}

function storedImage(
  image: ImageRecord,
  partition: { partition: Partition | null; fold: number | null } | undefined,
  result: PreprocessedImage,
): StoredImage {
  return {
    imageId: image.id,
    className: image.className,
    caseId: image.caseId,
    partition: partition?.partition ?? null,
    fold: partition?.fold ?? null,
    width: result.width,
    height: result.height,
    cols: result.grid.cols,
    rows: result.grid.rows,
    patches: result.count,
    total: result.total,
    measures: result.assessment,
  };
}

/** What a store (and a package trained from it) records of its preparation; checked. */
function preprocessConfig(
  recipe: ReturnType<typeof recipeParts>,
  reference: Parameters<typeof fitNormaliser>[1],
): PreprocessConfig {
  const config: PreprocessConfig = {
    normaliser: fitNormaliser(recipe.normalisation, reference),
    targetScale: recipe.targetScale,
    mpp: mppOfScale(recipe.targetScale),
    tiles: recipe.tiles,
    background: recipe.background,
    // Stated only when the recipe departs from the rule, so the stores of every other recipe keep their fingerprints.
    ...(recipe.maxUpsampling !== MAX_UPSAMPLING ? { maxUpsampling: recipe.maxUpsampling } : {}),
  };
  validatePreprocess(config);
  return config;
}

/**
 * The preprocessing a slide recipe cuts its tiles with, as a package keeps it: tiles at the
 * recipe's microns per pixel (a slide has its own, so one is needed), normalised by a method of
 * its own or against one reference image file ('dataset' averages catalogued fields, which a
 * slide run has not).
 */
export async function slidePreprocess(input: PrepareRecipeInput): Promise<PreprocessConfig> {
  const recipe = recipeParts(resolvePrepareRecipe(input));
  if (recipe.targetScale === null)
    throw new ConfigError(
      "slides are tiled at the recipe's microns per pixel: give the recipe an mpp (--mpp UM)",
    );
  const { reference } = recipe.normalisation;
  if (reference === 'dataset' || (reference !== undefined && !existsSync(reference)))
    throw new ConfigError(
      `the normalisation reference '${reference}' is not an image file: on slides, give --reference a file (the 'dataset' and catalogued references are fields')`,
    );
  return preprocessConfig(recipe, reference === undefined ? undefined : await decodeRgb(reference));
}

export async function prepare(
  catalog: Catalog,
  workspace: Workspace,
  options: PrepareOptions,
): Promise<PrepareReport> {
  const started = performance.now();
  const recipe = recipeParts(resolvePrepareRecipe(options.recipe));
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(options.name))
    throw new ConfigError(`store name '${options.name}' must be letters, digits, '.', '_' or '-'`);
  const images = catalog.images();
  if (images.length === 0)
    throw new ConfigError('the catalog has no images: run pathotype data import first');
  checkRecipeGeometry(catalog, options.recipe);
  const partitions = partitionsOf(catalog, options.split);
  const reference = await loadReference(catalog, recipe.normalisation.reference, partitions);
  const config = preprocessConfig(recipe, reference);
  const classes = catalog.classes();
  const print = fingerprint(images, partitions, config);
  const dir = path.join(workspace.patchesDir, options.name);
  if (!options.force && PatchStore.exists(dir)) {
    const existing = openReusable(dir);
    if (existing?.manifest.fingerprint === print) {
      return {
        manifest: existing.manifest,
        dir,
        reused: true,
        skipped: [],
        seconds: (performance.now() - started) / 1000,
      };
    }
  }

  const threads = Math.max(1, options.threads ?? availableCores());
  const pool = new Piscina<PrepareTask, PreprocessedImage>({
    filename: new URL('./prepare-worker.js', import.meta.url).href,
    minThreads: threads,
    maxThreads: threads,
  });
  const writer = await PatchStoreWriter.create(dir, config.tiles.patchSize);
  const skipped: PrepareReport['skipped'] = [];
  try {
    // A window of images in flight: enough to keep every thread busy, few enough to bound memory.
    const window = threads * 2;
    const pending: Promise<PreprocessedImage | Error>[] = [];
    const submit = (image: ImageRecord): Promise<PreprocessedImage | Error> =>
      pool
        .run({ path: image.path, width: image.width, height: image.height, scale: image.scale, config })
        .catch((error: unknown) => (error instanceof Error ? error : new Error(String(error))));
    let next = 0;
    for (; next < Math.min(window, images.length); next++) pending.push(submit(images[next] as ImageRecord));
    for (let i = 0; i < images.length; i++) {
      const image = images[i] as ImageRecord;
      const result = await (pending.shift() as Promise<PreprocessedImage | Error>);
      if (next < images.length) pending.push(submit(images[next++] as ImageRecord));
      if (result instanceof Error) {
        skipped.push({ path: image.path, reason: result.message });
      } else {
        await writer.add({
          image: storedImage(image, partitions.get(image.id), result),
          classIndex: classes.indexOf(image.className),
          patches: result.patches,
          cells: result.cells,
          backgroundFractions: result.backgroundFractions,
        });
      }
      options.onProgress?.(i + 1, images.length, writer.count);
    }
    if (writer.count === 0)
      throw new PathotypeError(
        'ERR_PREPARE',
        'no patches were produced: check the patch size, scale and background filter',
      );
    const manifest = await writer.finish({
      name: options.name,
      channels: 3,
      classes,
      split: options.split ?? null,
      preprocess: config,
      fingerprint: print,
    });
    catalog.record('prepare', {
      name: options.name,
      patches: manifest.count,
      images: manifest.images,
      skipped: skipped.length,
      fingerprint: print,
    });
    return { manifest, dir, reused: false, skipped, seconds: (performance.now() - started) / 1000 };
  } catch (error) {
    await writer.abort();
    throw error;
  } finally {
    await pool.destroy();
  }
}
