/**
 * A run says what it is and fails before any work: an ONNX-encoder run is named and labelled by
 * its encoder (not the preset's ResNet50), fetches no ResNet50, and a bad encoder or a recipe that
 * would enlarge the images too far stops it before the split and the first fold's prepare.
 */
import assert from 'node:assert/strict';
import { existsSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { groupsWithoutIds } from '../../src/acquire/grouping.js';
import { resolvePreset, runPipeline } from '../../src/pipeline/run.js';
import { defaultRunName, runLabel } from '../../src/pipeline/run-checks.js';
import { tempDir } from '../fixtures.js';
import { halfresSampleDir, hasShared, runCli } from '../helpers.js';
import { fieldCatalog } from '../slide-fixtures.js';

const MPP = 0.32 / 0.3;

describe(
  'run: what it is, checked before any work',
  { skip: !hasShared(halfresSampleDir) && 'needs ../shared' },
  () => {
    it('names and labels an encoder run by its encoder', () => {
      const encoder = { onnx: '/models/uni.onnx', inputSize: 224, mpp: 0.5 };
      const preset = resolvePreset('resnet50-probe', { train: { encoder } });
      assert.equal(defaultRunName(preset), 'uni-probe');
      assert.equal(runLabel(preset), 'probe on the ONNX encoder uni.onnx');
      const main = resolvePreset('resnet50-probe');
      assert.equal(defaultRunName(main), 'resnet50-probe');
      assert.equal(runLabel(main), 'probe on resnet50 to res4');
    });

    it('stops a bad encoder or too much enlargement before the weights, the split and prepare', async () => {
      const { catalog, workspace } = await fieldCatalog(2);
      const stages: string[] = [];
      const notOnnx = path.join(tempDir(), 'not.onnx');
      writeFileSync(notOnnx, 'text');
      const run = (overrides: Record<string, unknown>): Promise<unknown> =>
        runPipeline(catalog, workspace, {
          preset: 'resnet50-probe',
          overrides,
          onStage: (stage) => stages.push(stage),
        });
      const prepare = { mpp: MPP, patchSize: 32, stride: 32 };
      await assert.rejects(run({ prepare, train: { encoder: { onnx: notOnnx, inputSize: 32, mpp: MPP } } }), {
        code: 'ERR_ONNX',
      });
      await assert.rejects(
        run({ prepare, train: { encoder: { onnx: notOnnx, inputSize: 224, mpp: 0.5 } } }),
        /the encoder takes 224 px patches at 0\.5 um\/px, but the recipe's patches are 32 px/,
      );
      await assert.rejects(run({ prepare: { mpp: 0.5, patchSize: 32 } }), { code: 'ERR_UPSAMPLING' });
      assert.deepEqual(stages, [], 'no weights fetched, no split made, nothing prepared');
      assert.ok(!existsSync(workspace.patchesDir) || readdirSync(workspace.patchesDir).length === 0);
      catalog.close();
    });

    it('warns of one group per image only when the names carry no patient ids', async () => {
      const image = (className: string, fileName: string, caseId: string) => ({
        className,
        fileName,
        caseId,
      });
      // The half-resolution sample: one image per patient, the patients named.
      const named = readdirSync(path.join(halfresSampleDir, 'CLL')).map((f) =>
        image('CLL', f, /sj-\d+-\d+/.exec(f)?.[0] ?? ''),
      );
      assert.equal(groupsWithoutIds(named), false);
      assert.equal(groupsWithoutIds([image('CLL', 'a.png', 'CLL/a'), image('FL', 'b.png', 'FL/b')]), true);
      const imported = await runCli(['-w', tempDir(), 'data', 'import', halfresSampleDir]);
      assert.equal(imported.code, 0, imported.stderr);
      assert.doesNotMatch(imported.stderr, /group of its own/);
    });
  },
);
