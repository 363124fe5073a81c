import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { Catalog } from '../../src/acquire/catalog.js';
import { caseIdFor, parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { inferScale } from '../../src/image/scale.js';
import { workspaceAt } from '../../src/workspace.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { makeTar, pngHeaderClaiming, tempDir, writeDataset, writeFile } from '../fixtures.js';

describe('import', () => {
  it(
    'registers the development set grouped by patient, or by case on request, idempotently',
    { skip: !hasShared(lymphomaDir) && 'needs ../shared' },
    async () => {
      const workspace = workspaceAt(tempDir());
      const catalog = Catalog.open(workspace);
      const first = await importImages(catalog, workspace, lymphomaDir, {
        groupBy: parseGroupRule('auto'),
      });
      assert.deepEqual(first.perClass, { CLL: 89, FL: 109, MCL: 97 });
      assert.equal(first.added, 295);
      // 24 patients, 8 per class; the biopsy suffix (-R3) is not part of the patient id.
      assert.equal(first.cases, 24);
      const image = catalog.images().find((i) => i.fileName === 'sj-05-6124-R3_001.png');
      assert.equal(image?.className, 'FL');
      assert.equal(image?.caseId, 'sj-05-6124');
      assert.equal(image?.width, 417);
      assert.ok(Math.abs((image?.scale ?? 0) - 0.3004) < 0.001, `scale ${image?.scale}`);
      assert.match(image?.sha1 ?? '', /^[0-9a-f]{40}$/);
      const again = await importImages(catalog, workspace, lymphomaDir, {
        groupBy: parseGroupRule('patient'),
      });
      assert.deepEqual(
        [again.added, again.updated, again.unchanged],
        [0, 0, 295],
        "'patient' is what 'auto' found",
      );
      const byCase = await importImages(catalog, workspace, lymphomaDir, {
        groupBy: parseGroupRule('case'),
      });
      assert.equal(byCase.cases, 24, 'one biopsy per patient in the development set');
      assert.equal(
        catalog.images().find((i) => i.fileName === 'sj-05-6124-R3_001.png')?.caseId,
        'sj-05-6124-r3',
      );
      assert.equal(catalog.images().length, 295);
      catalog.close();
    },
  );

  it('reports and skips unreadable, non-image, duplicate and oversized files, and goes on', async () => {
    const root = tempDir();
    await writeDataset(root, ['CLL', 'FL'], 2, (_, i) => `${i}.png`);
    writeFile(path.join(root, 'CLL/notes.txt'), 'a pathologist wrote this');
    writeFile(path.join(root, 'CLL/fake.png'), 'not a png');
    writeFile(path.join(root, 'FL/bomb.png'), pngHeaderClaiming(60_000, 60_000));
    writeFile(path.join(root, 'FL/.DS_Store'), 'junk');
    writeFile(path.join(root, 'stray.png'), 'outside any class');
    mkdirSync(path.join(root, 'FL/dup'), { recursive: true });
    copyFileSync(path.join(root, 'FL/0.png'), path.join(root, 'FL/dup/copy.png'));
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    const report = await importImages(catalog, workspace, root, { groupBy: parseGroupRule('auto') });
    assert.equal(report.added, 4);
    const reasons = Object.fromEntries(report.skipped.map((s) => [path.relative(root, s.path), s.reason]));
    assert.match(reasons['CLL/notes.txt'] ?? '', /not a readable image/);
    assert.match(reasons['CLL/fake.png'] ?? '', /not a readable image/);
    assert.match(reasons['FL/bomb.png'] ?? '', /above the limit/);
    assert.match(reasons['FL/dup/copy.png'] ?? '', /same content as/);
    assert.match(reasons['stray.png'] ?? '', /not inside a class folder/);
    assert.equal(report.skipped.length, 5);
    catalog.close();
  });

  it('imports a tarball, an explicit scale and sj case ids', async () => {
    const root = tempDir();
    await writeDataset(root, ['CLL', 'MCL'], 2, (k, i) => `sj-0${k}-12${i}_00${i}.png`);
    const { readFileSync } = await import('node:fs');
    const entries = ['CLL', 'MCL'].flatMap((c, k) =>
      [0, 1].map((i) => ({
        name: `lymphoma/${c}/sj-0${k}-12${i}_00${i}.png`,
        data: readFileSync(path.join(root, c, `sj-0${k}-12${i}_00${i}.png`)),
      })),
    );
    const archive = writeFile(path.join(tempDir(), 'lymphoma.tar.gz'), makeTar(entries));
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    const report = await importImages(catalog, workspace, archive, {
      groupBy: parseGroupRule('sj'),
      scale: 0.5,
      mpp: 0.9,
    });
    assert.equal(report.added, 4);
    assert.ok(report.source.startsWith(workspace.datasetsDir));
    const images = catalog.images();
    assert.deepEqual(images.map((i) => i.caseId).sort(), [
      'sj-00-120',
      'sj-00-121',
      'sj-01-120',
      'sj-01-121',
    ]);
    assert.ok(images.every((i) => i.scale === 0.5 && i.mpp === 0.9));
    catalog.close();
  });

  it('derives case ids by rule and rejects bad rules', () => {
    assert.equal(caseIdFor(parseGroupRule('runs:12'), 'FL', '130.png'), 'FL/run-10');
    assert.equal(caseIdFor(parseGroupRule('sj'), 'FL', 'sj-05-3344_007.tif'), 'sj-05-3344');
    assert.equal(caseIdFor(parseGroupRule('patient'), 'FL', 'sj-05-6124-R3_002.tif'), 'sj-05-6124');
    assert.equal(caseIdFor(parseGroupRule('case'), 'FL', 'sj-05-6124-R3_002.tif'), 'sj-05-6124-r3');
    assert.equal(caseIdFor(parseGroupRule('auto'), 'FL', 'sj-05-6124-R4_010.png'), 'sj-05-6124');
    assert.equal(caseIdFor(parseGroupRule('auto'), 'FL', 'patientA/img1.tif'), 'FL/patientA');
    assert.equal(caseIdFor(parseGroupRule('regex:^(\\w+)-'), 'FL', 'p17-slide2.tif'), 'p17');
    assert.equal(caseIdFor(parseGroupRule('none'), 'FL', 'x.tif'), 'FL/x');
    assert.throws(() => parseGroupRule('runs:0'), /positive integer/);
    assert.throws(() => parseGroupRule('regex:('), /not a valid regular expression/);
    assert.throws(() => parseGroupRule('by-colour'), /unknown --group-by rule/);
    assert.throws(() => caseIdFor(parseGroupRule('runs:5'), 'FL', 'abc.png'), /not an integer file name/);
    assert.equal(inferScale(1388, 1040), 1);
    assert.equal(inferScale(417, 312), 0.3004);
    assert.equal(inferScale(500, 500), null);
  });
});
