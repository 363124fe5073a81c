import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { runCli, type CliResult } from '../helpers.js';
import { tempDir, writeDataset, writeFile } from '../fixtures.js';

async function pathotype(workspace: string, ...args: string[]): Promise<CliResult> {
  return runCli(['-w', workspace, ...args]);
}

describe('pathotype data and prepare commands', () => {
  it('imports, splits, prepares from a config file and reports', async () => {
    const root = tempDir();
    await writeDataset(root, ['CLL', 'FL', 'MCL'], 6, (_, i) => `${i}.png`, { width: 64, height: 48 });
    const ws = path.join(tempDir(), 'ws');
    const imported = await pathotype(
      ws,
      'data',
      'import',
      root,
      '--group-by',
      'runs:2',
      '--scale',
      '0.5',
      '--json',
    );
    assert.equal(imported.code, 0, imported.stderr);
    assert.equal((JSON.parse(imported.stdout) as { added: number }).added, 18);
    const split = await pathotype(ws, 'data', 'split', '--test', '0.34', '--seed', '3');
    assert.equal(split.code, 0, split.stderr);
    // Leave one patient out, as the README offers it.
    const loo = await pathotype(ws, 'data', 'split', '--kind', 'loo', '--name', 'loo', '--json');
    assert.equal(loo.code, 0, loo.stderr);
    assert.equal((JSON.parse(loo.stdout) as { name: string }).name, 'loo');
    assert.match(split.stdout, /test\s+CLL 2 images\/1 cases/);
    const config = writeFile(
      path.join(tempDir(), 'prepare.yaml'),
      [
        'name: small',
        'split: default',
        'normalisation: reinhard',
        'reference: FL/0.png',
        'targetScale: 0.5',
        'patchSize: 16',
      ].join('\n'),
    );
    const prepared = await pathotype(ws, 'prepare', '--config', config, '--stride', '16');
    assert.equal(prepared.code, 0, prepared.stderr);
    assert.match(prepared.stdout, /prepared 'small' .* 216 patches of 16x16 from 18 images/);
    const info = await pathotype(ws, 'data', 'info', '--json');
    const parsed = JSON.parse(info.stdout) as {
      images: number;
      patchStores: { name: string; patches: number }[];
      splits: unknown[];
    };
    assert.equal(parsed.images, 18);
    assert.deepEqual(
      parsed.patchStores.map((p) => [p.name, p.patches]),
      [['small', 216]],
    );
    assert.equal(parsed.splits.length, 2, 'the holdout and the leave-one-patient-out split');
  });

  it('rejects bad configuration and bad paths with clear messages', async () => {
    const ws = path.join(tempDir(), 'ws');
    const missing = await pathotype(ws, 'data', 'import', '/no/such/folder');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /does not exist/);
    const config = writeFile(
      path.join(tempDir(), 'bad.json'),
      JSON.stringify({ patchSize: 'huge', colour: 'blue' }),
    );
    const unknown = await pathotype(ws, 'prepare', '--config', config);
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown config key 'colour'/);
    const badValue = writeFile(path.join(tempDir(), 'bad.yaml'), 'patchSize: huge');
    const invalid = await pathotype(ws, 'prepare', '--config', badValue);
    assert.match(invalid.stderr, /invalid preparation recipe: patchSize must be integer/);
    // The same recipe inside a run config, and the training section, name the mistyped key.
    const runTypo = writeFile(
      path.join(tempDir(), 'run.yaml'),
      ['prepare:', '  patchsize: 16', 'train:', '  epoch: 2'].join('\n'),
    );
    const typo = await pathotype(ws, 'run', '--preset', 'small-cnn', '--config', runTypo);
    assert.equal(typo.code, 1);
    assert.match(typo.stderr, /unknown key 'prepare.patchsize'/);
    assert.match(typo.stderr, /unknown key 'train.epoch'/);
    const broken = writeFile(path.join(tempDir(), 'broken.yaml'), 'patchSize: [1, 2');
    assert.match((await pathotype(ws, 'prepare', '--config', broken)).stderr, /not valid YAML/);
    const method = await pathotype(ws, 'prepare', '--normalisation', 'vahadane');
    assert.notEqual(method.code, 0);
    assert.match(method.stderr, /expected one of none, percentile, reinhard, macenko, haematoxylin/);
    const split = await pathotype(ws, 'data', 'split', '--kind', 'random');
    assert.match(split.stderr, /argument 'random' is invalid\. expected one of holdout, kfold, loo/);
  });
});
