/**
 * Precision chosen by the hardware: bf16 autocast only where the CPU has native bf16, unless a
 * recipe or PATHOTYPE_BF16 says otherwise; the choice is recorded in the package and shown by
 * `engine info`.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { afterEach, describe, it } from 'node:test';
import { promisify } from 'node:util';

import { cpuHasNativeBf16, resolveBf16 } from '../../src/engine/precision.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { train } from '../../src/train/trainer.js';
import { patternWorkspace } from '../fixtures.js';
import { repoRoot } from '../helpers.js';

describe('precision', () => {
  const saved = process.env.PATHOTYPE_BF16;
  afterEach(() => {
    if (saved === undefined) delete process.env.PATHOTYPE_BF16;
    else process.env.PATHOTYPE_BF16 = saved;
  });

  it('auto follows the CPU; true and false are kept; PATHOTYPE_BF16 overrides all', () => {
    delete process.env.PATHOTYPE_BF16;
    assert.equal(resolveBf16('auto'), cpuHasNativeBf16());
    assert.equal(resolveBf16(false), false);
    const warnings: string[] = [];
    assert.equal(
      resolveBf16(true, (m) => warnings.push(m)),
      true,
    );
    assert.equal(warnings.length, cpuHasNativeBf16() ? 0 : 1);
    if (!cpuHasNativeBf16()) assert.match(warnings[0] ?? '', /10-30x slower/);
    process.env.PATHOTYPE_BF16 = 'off';
    assert.equal(resolveBf16(true), false);
    process.env.PATHOTYPE_BF16 = 'on';
    assert.equal(resolveBf16(false), true);
    process.env.PATHOTYPE_BF16 = 'auto';
    assert.equal(resolveBf16(true), cpuHasNativeBf16());
    process.env.PATHOTYPE_BF16 = 'maybe';
    assert.throws(() => resolveBf16('auto'), { code: 'ERR_CONFIG' });
  });

  it('the package records the precision it was trained in, forced both ways', async () => {
    for (const [force, expected] of [
      ['off', 'fp32'],
      ['on', 'bf16'],
    ] as const) {
      process.env.PATHOTYPE_BF16 = force;
      const { workspace, catalog } = await patternWorkspace(4, {
        testFraction: 0.25,
        validationFraction: 0,
        seed: 1,
      });
      catalog.close();
      const result = await train(
        workspace,
        resolveTrainConfig({
          name: `p-${force}`,
          store: 'patterns',
          architecture: 'small_cnn',
          phases: [{ epochs: 1, learningRate: 3e-3 }],
          batchSize: 16,
        }),
      );
      assert.equal((result.manifest.training as { precision?: string }).precision, expected, force);
      assert.equal((result.manifest.training as { bf16?: unknown }).bf16, expected === 'bf16');
    }
  });

  it('engine info says which precision it computes in', async () => {
    for (const [force, expected] of [
      ['off', 'fp32'],
      ['on', 'bf16'],
    ] as const) {
      const { stdout } = await promisify(execFile)(
        process.execPath,
        [path.join(repoRoot, 'bin/pathotype.js'), 'engine', 'info', '--json'],
        { env: { ...process.env, PATHOTYPE_BF16: force } },
      );
      const info = JSON.parse(stdout) as { precision: string; cpuHasBf16: boolean };
      assert.equal(info.precision, expected);
      assert.equal(info.cpuHasBf16, cpuHasNativeBf16());
    }
  });
});
