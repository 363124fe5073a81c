/**
 * `pathotype data split`: partitions images stratified by class and grouped by case, so that no
 * case appears on two sides and each class keeps its share everywhere. Seeded: the same catalog
 * and seed always give the same split.
 */
import { ConfigError } from '../errors.js';
import { seededRandom } from '../random.js';
import type { Catalog, ImageRecord, Partition, SlideRecord, SplitMember } from './catalog.js';

/** What a split groups and stratifies: an image (or a slide) with its case (patient) and class. */
export type SplitItem = Pick<ImageRecord, 'id' | 'caseId' | 'className'>;

export type SplitConfig =
  | { kind: 'holdout'; testFraction: number; validationFraction: number; seed: number }
  | { kind: 'kfold'; folds: number; validationFraction: number; seed: number }
  /** Leave one group (patient) out: as many folds as groups, each holding one group's images. */
  | { kind: 'loo'; validationFraction: number; seed: number }
  /** No test part: every group trains (a validation share may be carved off), for the final model. */
  | { kind: 'all'; validationFraction: number; seed: number };

/** KNIME's holdout share; five folds; no validation share; seed 1. */
export const SPLIT_DEFAULTS = { testFraction: 0.4, folds: 5, validationFraction: 0, seed: 1 } as const;

/** A split config as data (a preset's or a config file's `split` section). */
export const SPLIT_SCHEMA = {
  type: 'object',
  additionalProperties: false,
  required: ['kind'],
  properties: {
    kind: { enum: ['holdout', 'kfold', 'loo', 'all'] },
    testFraction: { type: 'number', exclusiveMinimum: 0, exclusiveMaximum: 1 },
    folds: { type: 'integer', minimum: 2, maximum: 100 },
    validationFraction: { type: 'number', minimum: 0, exclusiveMaximum: 1 },
    seed: { type: 'integer', minimum: 0 },
  },
} as const;

/** Folds of a fold-making split: k, or one per group for leave-one-out. */
export function foldCount(config: SplitConfig, images: readonly SplitItem[]): number {
  if (config.kind === 'kfold') return config.folds;
  if (config.kind === 'loo') return new Set(images.map((i) => i.caseId)).size;
  return 0;
}

interface CaseGroup {
  id: string;
  className: string;
  images: SplitItem[];
}

function shuffle<T>(items: T[], random: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    [items[i], items[j]] = [items[j] as T, items[i] as T];
  }
  return items;
}

/** Cases per class; a case that spans classes is kept whole under its most frequent class. */
function casesByClass(images: readonly SplitItem[]): Map<string, CaseGroup[]> {
  const cases = new Map<string, SplitItem[]>();
  for (const image of images) cases.set(image.caseId, [...(cases.get(image.caseId) ?? []), image]);
  const byClass = new Map<string, CaseGroup[]>();
  for (const [id, members] of [...cases.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const counts = new Map<string, number>();
    for (const m of members) counts.set(m.className, (counts.get(m.className) ?? 0) + 1);
    const className =
      [...counts.entries()].sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))[0]?.[0] ?? '';
    byClass.set(className, [...(byClass.get(className) ?? []), { id, className, images: members }]);
  }
  return byClass;
}

/**
 * Picks cases until their images come closest to `target`: each case, in shuffled order, joins
 * when that brings the total nearer the target. Always leaves at least one case unpicked.
 */
function pickCases(cases: readonly CaseGroup[], target: number): Set<CaseGroup> {
  const picked = new Set<CaseGroup>();
  let total = 0;
  for (const c of cases) {
    if (picked.size >= cases.length - 1) break;
    if (Math.abs(total + c.images.length - target) < Math.abs(total - target)) {
      picked.add(c);
      total += c.images.length;
    }
  }
  return picked;
}

function checkFraction(value: number, what: string, allowZero: boolean): void {
  if (!Number.isFinite(value) || value < 0 || value >= 1 || (!allowZero && value === 0)) {
    throw new ConfigError(
      `${what} must be ${allowZero ? 'at least 0' : 'above 0'} and below 1 (got ${value})`,
    );
  }
}

/** Assigns every image; pure, for tests and for `split`. */
export function computeSplit(images: readonly SplitItem[], config: SplitConfig): SplitMember[] {
  checkFraction(config.validationFraction, 'the validation fraction', true);
  if (!Number.isSafeInteger(config.seed) || config.seed < 0)
    throw new ConfigError('the seed must be a non-negative integer');
  const random = seededRandom(config.seed);
  const members: SplitMember[] = [];
  if (config.kind === 'loo') {
    const groups = [...new Set(images.map((i) => i.caseId))].sort();
    if (groups.length < 2) throw new ConfigError('leave-one-out needs at least 2 groups (patients)');
    const foldOf = new Map(groups.map((g, k) => [g, k]));
    return images
      .map((image) => ({ imageId: image.id, partition: null, fold: foldOf.get(image.caseId) ?? 0 }))
      .sort((a, b) => a.imageId - b.imageId);
  }
  if (config.kind === 'all') {
    const validation =
      config.validationFraction > 0
        ? computeSplit(images, {
            kind: 'holdout',
            testFraction: config.validationFraction,
            validationFraction: 0,
            seed: config.seed,
          })
        : [];
    const held = new Set(validation.filter((m) => m.partition === 'test').map((m) => m.imageId));
    return images
      .map((image): SplitMember => {
        const partition: Partition = held.has(image.id) ? 'validation' : 'train';
        return { imageId: image.id, partition, fold: null };
      })
      .sort((a, b) => a.imageId - b.imageId);
  }
  const byClass = casesByClass(images);
  for (const className of [...byClass.keys()].sort()) {
    const cases = shuffle([...(byClass.get(className) ?? [])], random);
    const count = cases.reduce((n, c) => n + c.images.length, 0);
    if (config.kind === 'holdout') {
      checkFraction(config.testFraction, 'the test fraction', false);
      if (cases.length < 2)
        throw new ConfigError(`class '${className}' has only ${cases.length} case: cannot hold any out`);
      const test = pickCases(cases, count * config.testFraction);
      const rest = cases.filter((c) => !test.has(c));
      const trainCount = rest.reduce((n, c) => n + c.images.length, 0);
      const validation =
        config.validationFraction > 0 ? pickCases(rest, trainCount * config.validationFraction) : new Set();
      for (const c of cases) {
        const partition: Partition = test.has(c) ? 'test' : validation.has(c) ? 'validation' : 'train';
        for (const image of c.images) members.push({ imageId: image.id, partition, fold: null });
      }
    } else {
      if (!Number.isInteger(config.folds) || config.folds < 2)
        throw new ConfigError('k-fold needs at least 2 folds');
      if (cases.length < config.folds) {
        throw new ConfigError(
          `class '${className}' has ${cases.length} cases, fewer than ${config.folds} folds`,
        );
      }
      // Largest cases first, each into the fold holding fewest images of this class so far.
      const sizes = new Array<number>(config.folds).fill(0);
      const ordered = [...cases].sort((a, b) => b.images.length - a.images.length);
      const foldOf = new Map<CaseGroup, number>();
      for (const c of ordered) {
        const fold = sizes.indexOf(Math.min(...sizes));
        foldOf.set(c, fold);
        sizes[fold] = (sizes[fold] ?? 0) + c.images.length;
      }
      for (const c of cases)
        for (const image of c.images)
          members.push({ imageId: image.id, partition: null, fold: foldOf.get(c) ?? 0 });
    }
  }
  return members.sort((a, b) => a.imageId - b.imageId);
}

/**
 * Partition of each image for one fold of a k-fold split: the fold is the test set, a
 * validation share (grouped by case) is carved from the rest when asked.
 */
export function foldPartitions(
  images: readonly SplitItem[],
  members: readonly SplitMember[],
  fold: number,
  validationFraction: number,
  seed: number,
): Map<number, Partition> {
  const out = new Map<number, Partition>();
  const foldOf = new Map(members.map((m) => [m.imageId, m.fold]));
  const training = images.filter((i) => foldOf.get(i.id) !== fold);
  for (const image of images) if (foldOf.get(image.id) === fold) out.set(image.id, 'test');
  const inner = computeSplit(training, {
    kind: 'holdout',
    testFraction: validationFraction > 0 ? validationFraction : 0.5,
    validationFraction: 0,
    seed: seed + fold,
  });
  for (const m of inner)
    out.set(m.imageId, validationFraction > 0 && m.partition === 'test' ? 'validation' : 'train');
  return out;
}

/** Each slide's fold (its patient's), and the folds in order. */
export interface SlideFolds {
  /** Fold of each slide by its id: the manifest's own number, or 1..k. */
  foldOf: Map<number, number>;
  folds: number[];
  /** The manifest's fold column fixed them (the recipe's split was not used). */
  fromManifest: boolean;
}

/** The manifest's folds, checked: every slide has one, a patient's slides share theirs, two folds at least. */
function manifestFolds(slides: readonly SlideRecord[]): SlideFolds {
  const byPatient = new Map<string, Set<number>>();
  for (const s of slides) byPatient.set(s.patient, (byPatient.get(s.patient) ?? new Set()).add(s.fold ?? -1));
  const split = [...byPatient].filter(([, folds]) => folds.size > 1);
  if (split.length > 0)
    throw new ConfigError(
      `the manifest puts one patient's slides in two folds, which would train on a patient it tests: ${split
        .map(([patient, folds]) => `${patient} (folds ${[...folds].join(', ')})`)
        .join('; ')}`,
    );
  const folds = [...new Set(slides.map((s) => s.fold ?? -1))].sort((a, b) => a - b);
  if (folds.length < 2)
    throw new ConfigError(
      `the manifest puts every slide in fold ${folds.join()}: cross-validation needs two folds or more`,
    );
  return { foldOf: new Map(slides.map((s) => [s.id, s.fold ?? -1])), folds, fromManifest: true };
}

/**
 * Each slide's fold for cross-validation by patient: the manifest's fold column when every slide
 * has one, else the recipe's k-fold (or leave-one-out) split over patients, stratified by label,
 * seeded; a patient's slides are always in one fold.
 */
export function slideFolds(slides: readonly SlideRecord[], config: SplitConfig): SlideFolds {
  const given = slides.filter((s) => s.fold !== null).length;
  if (given > 0 && given < slides.length)
    throw new ConfigError(
      `the manifest gives a fold for ${given} of its ${slides.length} slides: give every row a fold (they fix the cross-validation) or none (the recipe's split makes them)`,
    );
  if (given > 0) return manifestFolds(slides);
  if (config.kind !== 'kfold' && config.kind !== 'loo')
    throw new ConfigError(
      `slides are cross-validated by patient: the recipe's split must be k-fold or leave-one-out (--folds K or --folds loo), not ${config.kind}`,
    );
  const items = slides.map((s) => ({ id: s.id, caseId: s.patient, className: s.label }));
  const foldOf = new Map(computeSplit(items, config).map((m) => [m.imageId, (m.fold ?? 0) + 1]));
  const folds = Array.from({ length: foldCount(config, items) }, (_, k) => k + 1);
  return { foldOf, folds, fromManifest: false };
}

export interface SplitSummary {
  name: string;
  counts: Record<string, Record<string, { images: number; cases: number }>>;
}

export function createSplit(catalog: Catalog, name: string, config: SplitConfig): SplitSummary {
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name))
    throw new ConfigError(`split name '${name}' must be letters, digits, '.', '_' or '-'`);
  const images = catalog.images();
  if (images.length === 0)
    throw new ConfigError('the catalog has no images: run pathotype data import first');
  const members = computeSplit(images, config);
  catalog.saveSplit({ name, kind: config.kind, seed: config.seed, params: { ...config } }, members);
  return summarizeSplit(images, members, name);
}

export function summarizeSplit(
  images: readonly ImageRecord[],
  members: readonly SplitMember[],
  name: string,
): SplitSummary {
  const byId = new Map(images.map((i) => [i.id, i]));
  const counts: SplitSummary['counts'] = {};
  const cases = new Map<string, Set<string>>();
  for (const m of members) {
    const image = byId.get(m.imageId);
    if (!image) continue;
    const part = m.partition ?? `fold ${m.fold ?? 0}`;
    const row = (counts[part] ??= {});
    const cell = (row[image.className] ??= { images: 0, cases: 0 });
    cell.images++;
    const key = `${part}\u0000${image.className}`;
    const set = cases.get(key) ?? new Set<string>();
    set.add(image.caseId);
    cases.set(key, set);
    cell.cases = set.size;
  }
  return { name, counts };
}
