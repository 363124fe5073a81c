import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { Catalog, type ImageRecord, type SlideRecord } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { computeSplit, createSplit, foldCount, foldPartitions, slideFolds } from '../../src/acquire/split.js';
import { workspaceAt } from '../../src/workspace.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { tempDir } from '../fixtures.js';

function images(perClass: Record<string, number[]>): ImageRecord[] {
  let id = 1;
  const out: ImageRecord[] = [];
  for (const [className, caseSizes] of Object.entries(perClass)) {
    caseSizes.forEach((size, c) => {
      for (let i = 0; i < size; i++) {
        out.push({
          id: id++,
          path: `/x/${className}/${c}-${i}`,
          fileName: `${c}-${i}`,
          className,
          caseId: `${className}/case-${c}`,
          sha1: `${id}`,
          width: 10,
          height: 10,
          channels: 3,
          bitDepth: 8,
          format: 'png',
          scale: 1,
          mpp: null,
          source: '/x',
          importedAt: '',
        });
      }
    });
  }
  return out;
}

const data = images({
  CLL: [8, 12, 10, 9, 11, 7, 10, 10],
  FL: [15, 10, 12, 8, 14, 9, 11, 10, 12],
  MCL: [9, 9, 11, 10, 12, 8, 10, 13],
});

function caseSides(all: ImageRecord[], side: (id: number) => string): Map<string, Set<string>> {
  const sides = new Map<string, Set<string>>();
  for (const image of all)
    sides.set(image.caseId, (sides.get(image.caseId) ?? new Set()).add(side(image.id)));
  return sides;
}

describe('splits', () => {
  it('holds out about the asked share of each class, never splitting a case', () => {
    const members = computeSplit(data, {
      kind: 'holdout',
      testFraction: 0.4,
      validationFraction: 0.2,
      seed: 3,
    });
    const part = new Map(members.map((m) => [m.imageId, m.partition ?? '']));
    for (const sides of caseSides(data, (id) => part.get(id) ?? '').values()) assert.equal(sides.size, 1);
    for (const className of ['CLL', 'FL', 'MCL']) {
      const ofClass = data.filter((i) => i.className === className);
      const test = ofClass.filter((i) => part.get(i.id) === 'test').length / ofClass.length;
      const validation = ofClass.filter((i) => part.get(i.id) === 'validation').length;
      assert.ok(Math.abs(test - 0.4) < 0.1, `${className} test share ${test}`);
      assert.ok(validation > 0, `${className} has validation images`);
    }
  });

  it('is reproducible for a seed and differs between seeds', () => {
    const a = computeSplit(data, { kind: 'holdout', testFraction: 0.4, validationFraction: 0, seed: 5 });
    const b = computeSplit([...data].reverse(), {
      kind: 'holdout',
      testFraction: 0.4,
      validationFraction: 0,
      seed: 5,
    });
    const c = computeSplit(data, { kind: 'holdout', testFraction: 0.4, validationFraction: 0, seed: 6 });
    assert.deepEqual(a, b);
    assert.notDeepEqual(a, c);
  });

  it('makes balanced k folds of whole cases, and fold partitions with validation', () => {
    const members = computeSplit(data, { kind: 'kfold', folds: 4, validationFraction: 0, seed: 1 });
    const fold = new Map(members.map((m) => [m.imageId, String(m.fold)]));
    for (const sides of caseSides(data, (id) => fold.get(id) ?? '').values()) assert.equal(sides.size, 1);
    for (const className of ['CLL', 'FL', 'MCL']) {
      const sizes = [0, 1, 2, 3].map(
        (f) => data.filter((i) => i.className === className && fold.get(i.id) === String(f)).length,
      );
      assert.ok(Math.max(...sizes) - Math.min(...sizes) <= 8, `${className} folds ${sizes.join(',')}`);
    }
    const parts = foldPartitions(data, members, 2, 0.2, 1);
    assert.equal(
      [...parts.values()].filter((p) => p === 'test').length,
      data.filter((i) => fold.get(i.id) === '2').length,
    );
    assert.ok([...parts.values()].includes('validation'));
    for (const sides of caseSides(data, (id) => parts.get(id) ?? '').values()) assert.equal(sides.size, 1);
  });

  it('rejects impossible splits clearly', () => {
    const tiny = images({ CLL: [5], FL: [4, 4] });
    assert.throws(
      () => computeSplit(tiny, { kind: 'holdout', testFraction: 0.4, validationFraction: 0, seed: 1 }),
      /class 'CLL' has only 1 case/,
    );
    assert.throws(
      () => computeSplit(data, { kind: 'kfold', folds: 20, validationFraction: 0, seed: 1 }),
      /fewer than 20 folds/,
    );
    assert.throws(
      () => computeSplit(data, { kind: 'holdout', testFraction: 1.5, validationFraction: 0, seed: 1 }),
      /below 1/,
    );
  });

  it(
    'splits the development set the same way every time, stored with its parameters',
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const counts: string[] = [];
      for (let run = 0; run < 2; run++) {
        const workspace = workspaceAt(tempDir());
        const catalog = Catalog.open(workspace);
        await importImages(catalog, workspace, lymphomaDir, { groupBy: parseGroupRule('auto') });
        const summary = createSplit(catalog, 'knime', {
          kind: 'holdout',
          testFraction: 0.4,
          validationFraction: 0,
          seed: 42,
        });
        counts.push(JSON.stringify(summary.counts));
        const stored = catalog.split('knime');
        assert.equal(stored?.seed, 42);
        assert.equal(stored?.params.testFraction, 0.4);
        const members = catalog.splitMembers('knime');
        assert.equal(members.length, 295);
        const part = new Map(members.map((m) => [m.imageId, m.partition ?? '']));
        for (const sides of caseSides(catalog.images(), (id) => part.get(id) ?? '').values())
          assert.equal(sides.size, 1);
        const test = members.filter((m) => m.partition === 'test').length;
        assert.ok(test > 0.3 * 295 && test < 0.5 * 295, `${test} test images`);
        // Leave one patient out: a fold per patient, each patient's images in its own fold.
        const loo = computeSplit(catalog.images(), { kind: 'loo', validationFraction: 0, seed: 1 });
        const patientOf = new Map(catalog.images().map((i) => [i.id, i.caseId]));
        assert.equal(new Set(loo.map((m) => m.fold)).size, 24);
        for (const sides of caseSides(catalog.images(), (id) =>
          String(loo.find((m) => m.imageId === id)?.fold),
        ).values())
          assert.equal(sides.size, 1);
        assert.equal(foldCount({ kind: 'loo', validationFraction: 0, seed: 1 }, catalog.images()), 24);
        // Everything for the final model, a validation share of whole patients carved off.
        const all = computeSplit(catalog.images(), { kind: 'all', validationFraction: 0.2, seed: 1 });
        assert.equal(all.filter((m) => m.partition === 'test').length, 0);
        const validation = all.filter((m) => m.partition === 'validation');
        assert.ok(validation.length > 30 && validation.length < 90, `${validation.length} validation images`);
        const validationPatients = new Set(validation.map((m) => patientOf.get(m.imageId)));
        assert.ok(
          all
            .filter((m) => m.partition === 'train')
            .every((m) => !validationPatients.has(patientOf.get(m.imageId))),
        );
        catalog.close();
      }
      assert.equal(counts[0], counts[1]);
    },
  );
});

describe('slide folds', () => {
  /** Two slides for each of four patients per class; `fold` per patient when given. */
  const slides = (fold?: (patient: number) => number | null): SlideRecord[] =>
    ['CLL', 'FL', 'MCL'].flatMap((label, c) =>
      [0, 1, 2, 3].flatMap((p) =>
        ['a', 'b'].map(
          (side, s) =>
            ({
              id: c * 8 + p * 2 + s + 1,
              path: `/s/${label}-${p}-${side}.tiff`,
              patient: `${label}-${p}`,
              label,
              fold: fold ? fold(p) : null,
            }) as SlideRecord,
        ),
      ),
    );

  it("keeps a patient's slides in one fold, stratified by class, or the manifest's folds", () => {
    const kfold = slideFolds(slides(), { kind: 'kfold', folds: 2, validationFraction: 0, seed: 1 });
    assert.deepEqual([kfold.folds, kfold.fromManifest], [[1, 2], false]);
    const byPatient = new Map<string, Set<number>>();
    for (const s of slides())
      byPatient.set(s.patient, (byPatient.get(s.patient) ?? new Set()).add(kfold.foldOf.get(s.id) ?? 0));
    assert.ok([...byPatient.values()].every((f) => f.size === 1));
    for (const label of ['CLL', 'FL', 'MCL'])
      assert.equal(slides().filter((s) => s.label === label && kfold.foldOf.get(s.id) === 1).length, 4);

    const fixed = slideFolds(
      slides((p) => (p % 2) * 5 + 3),
      { kind: 'kfold', folds: 4, validationFraction: 0, seed: 1 },
    );
    assert.deepEqual([fixed.folds, fixed.fromManifest], [[3, 8], true]);
    assert.equal(fixed.foldOf.get(3), 8, "patient 1's slides in its manifest fold");
  });

  it('refuses a patient split over folds, folds on some rows only, and a holdout split', () => {
    const split = slides((p) => p).map((s) => (s.path.endsWith('-0-b.tiff') ? { ...s, fold: 9 } : s));
    assert.throws(() => slideFolds(split, { kind: 'kfold', folds: 2, validationFraction: 0, seed: 1 }), {
      message: /one patient's slides in two folds.*CLL-0 \(folds 0, 9\)/,
    });
    const some = slides().map((s, k) => (k === 0 ? { ...s, fold: 1 } : s));
    assert.throws(() => slideFolds(some, { kind: 'kfold', folds: 2, validationFraction: 0, seed: 1 }), {
      message: /a fold for 1 of its 24 slides/,
    });
    assert.throws(
      () => slideFolds(slides(), { kind: 'holdout', testFraction: 0.3, validationFraction: 0, seed: 1 }),
      { message: /k-fold or leave-one-out/ },
    );
  });
});
