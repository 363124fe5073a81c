/** The slide manifest from the command line: mosaic slides, their import, a refused manifest, data info. */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { lymphomaDir, runCli } from '../helpers.js';

describe('pathotype data mosaic-slides / data import MANIFEST.csv', () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'pathotype-cli-manifest-'));
  const ws = path.join(dir, 'ws');
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('writes slides and a manifest, imports them, refuses a bad manifest with its rows named', async () => {
    const slides = path.join(dir, 'slides');
    const made = await runCli([
      'data',
      'mosaic-slides',
      lymphomaDir,
      slides,
      '--group-by',
      'patient',
      '--patients',
      'sj-03-2810,sj-04-3077',
      '--max-fields',
      '2',
    ]);
    assert.equal(made.code, 0, made.stderr);
    assert.match(made.stdout, /4 slides of 2 patients; manifest .*manifest\.csv/);

    const bad = path.join(slides, 'bad.csv');
    writeFileSync(
      bad,
      'slide,patient,label\nsj-03-2810-a.tiff,sj-03-2810,CLL\nsj-03-2810-b.tiff,sj-03-2810,FL\n',
    );
    const refused = await runCli(['-w', ws, 'data', 'import', bad]);
    assert.notEqual(refused.code, 0);
    assert.match(refused.stderr, /ERR_MANIFEST/);
    assert.match(refused.stderr, /line 3: patient sj-03-2810 is labelled FL here and CLL on line 2/);

    const imported = await runCli([
      '-w',
      ws,
      'data',
      'import',
      path.join(slides, 'manifest.csv'),
      '--classes',
      'CLL,FL,MCL',
      '--json',
    ]);
    assert.equal(imported.code, 0, imported.stderr);
    const report = JSON.parse(imported.stdout) as {
      added: number;
      patients: number;
      perClass: Record<string, number>;
    };
    assert.deepEqual([report.added, report.patients, report.perClass], [4, 2, { CLL: 2, MCL: 2 }]);

    const info = await runCli(['-w', ws, 'data', 'info']);
    assert.equal(info.code, 0, info.stderr);
    assert.match(info.stdout, /CLL: 2 slides, 1 patients/);
    assert.match(info.stdout, /MCL: 2 slides, 1 patients/);
  });
});
