import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { runCli, type CliResult } from '../helpers.js';

async function pathotype(...args: string[]): Promise<CliResult> {
  return runCli(args);
}

describe('pathotype CLI', () => {
  it('prints help for the program and each subcommand', async () => {
    const top = await pathotype('--help');
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: pathotype/);
    for (const command of [
      ['engine', 'info'],
      ['engine', 'summary'],
      ['bench', 'engine'],
    ]) {
      const help = await pathotype(...command, '--help');
      assert.equal(help.code, 0, command.join(' '));
      assert.match(help.stdout, new RegExp(`Usage: pathotype ${command.join(' ')}`));
    }
  });

  it('reports the engine', async () => {
    const { stdout, code } = await pathotype('engine', 'info', '--json');
    assert.equal(code, 0);
    const info = JSON.parse(stdout) as { torchVersion: string; mkldnn: boolean; threads: number };
    assert.match(info.torchVersion, /^\d+\.\d+/);
    assert.equal(typeof info.mkldnn, 'boolean');
    assert.ok(info.threads >= 1);
  });

  it('summarises a zoo network', async () => {
    const { stdout, code } = await pathotype('engine', 'summary', 'vgg16', '--size', '32');
    assert.equal(code, 0);
    assert.match(stdout, /block5_conv3\.weight\s+\[512, 512, 3, 3\]/);
    assert.match(stdout, /vgg16: 14,716,227 parameters/);
  });

  it('fails with a clear message and a non-zero code on bad arguments', async () => {
    const unknown = await pathotype('engine', 'summary', 'resnet101');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown architecture 'resnet101'/);
    const bad = await pathotype('bench', 'engine', '--batch', 'many');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /expected a positive integer/);
    const nothing = await pathotype('frobnicate');
    assert.notEqual(nothing.code, 0);
    assert.match(nothing.stderr, /unknown command/);
  });

  it('runs the engine benchmark and reports figures and ratios', async () => {
    const { stdout, code, stderr } = await pathotype(
      'bench',
      'engine',
      '--json',
      '--batch',
      '2',
      '--size',
      '32',
      '--train-steps',
      '1',
      '--predict-steps',
      '1',
      '--warmup',
      '0',
      '--no-bf16',
    );
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as {
      rows: {
        engine: string;
        result?: { trainPerSecond: number; predictPerSecond: number };
        note?: string;
      }[];
      ratios: { name: string; train?: number }[];
    };
    const addon = report.rows.find((r) => r.engine === 'addon');
    assert.ok(addon?.result && addon.result.trainPerSecond > 0 && addon.result.predictPerSecond > 0);
    const cxx = report.rows.find((r) => r.engine === 'cxx');
    assert.ok(cxx?.result && cxx.result.trainPerSecond > 0, 'the plain C++ baseline ran');
    assert.ok(report.ratios.some((r) => r.name === 'addon/C++ fp32' && (r.train ?? 0) > 0));
    const python = report.rows.find((r) => r.engine === 'pytorch');
    assert.ok(python?.result ?? python?.note, 'PyTorch either ran or says why not');
  });
});
