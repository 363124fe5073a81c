/**
 * One descriptor per bag pooling: its layer is what the multiple-instance head is built with and
 * is found back by, its vote rule asks for exactly what it gives, and whether it has attention is
 * answered by it for a head, a package and the runner alike.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { milHeadSpec, milRunner, perPatchExport } from '../../src/engine/mil-head.js';
import { Network } from '../../src/engine/network.js';
import {
  BAG_POOLING,
  BAG_POOLINGS,
  bagPoolingOf,
  SPATIAL_POOLING,
  SPATIAL_POOLINGS,
  VOTE_RULE_NEEDS,
  VOTE_RULES,
} from '../../src/engine/pooling.js';
import { buildSpec } from '../../src/engine/zoo.js';
import { hasAttention } from '../../src/model/package.js';

const FEATURES = 6;

describe('pooling', () => {
  it('builds each bag pooling from its descriptor, finds it back, and asks the vote for what it gives', async () => {
    assert.deepEqual(BAG_POOLINGS, ['attention', 'mean']);
    for (const pooling of BAG_POOLINGS) {
      const descriptor = BAG_POOLING[pooling];
      const head = milHeadSpec({
        features: FEATURES,
        classes: 3,
        pooling,
        projection: 4,
        attention: 4,
        dropout: 0,
      });
      assert.deepEqual(
        head.layers.filter((l) => l.type === descriptor.layer(4).type),
        [descriptor.layer(4)],
        pooling,
      );
      assert.equal(bagPoolingOf(head), pooling);
      assert.ok(VOTE_RULES.includes(descriptor.vote));
      assert.equal(VOTE_RULE_NEEDS[descriptor.vote].attention, descriptor.attention, pooling);
      assert.ok(
        VOTE_RULE_NEEDS[descriptor.vote].logProbabilities,
        'a pooled bag is voted on its exact logits',
      );
      assert.equal(hasAttention({ mil: { pooling, head, file: 'mil-head' } }), descriptor.attention);
      assert.match(descriptor.sidecar, /^image logits = /);

      // The runner gives instance scores exactly when the pooling has attention.
      const network = await Network.create(head);
      const runner = milRunner(
        {
          engine: 'addon',
          classes: FEATURES,
          imageBytes: 3,
          predict: (batch) =>
            Promise.resolve(
              Float32Array.from({ length: (batch.length / 3) * FEATURES }, (_, i) => (i % 7) / 7),
            ),
          close: () => Promise.resolve(),
        },
        network,
      );
      const { logits, attention } = await runner.instances(new Uint8Array(4 * 3));
      assert.equal(logits.length, 4 * 3);
      assert.equal(attention !== null, descriptor.attention, pooling);
      // Exported per patch (ONNX), the pool of one instance is the identity: kept only for its scores.
      const exported = perPatchExport(head, [], head, await network.exportTensors());
      const headPart = exported.spec.layers.slice(head.layers.length);
      assert.equal(
        headPart.some((l) => l.type === descriptor.layer(4).type),
        descriptor.attention,
        pooling,
      );
    }
    assert.equal(hasAttention({}), false, 'a package without a multiple-instance head');
  });

  it("keeps the head's spatial pooling, the bag pooling and the vote rule apart, each its own vocabulary", () => {
    assert.deepEqual(SPATIAL_POOLINGS, ['flatten', 'avg']);
    for (const pooling of SPATIAL_POOLINGS) {
      const spec = buildSpec('small_cnn', { inputSize: 32, head: { classes: 3, pooling } });
      assert.ok(
        spec.layers.some((l) => l.type === SPATIAL_POOLING[pooling].type),
        pooling,
      );
    }
    assert.deepEqual(Object.keys(VOTE_RULE_NEEDS), [...VOTE_RULES]);
    assert.deepEqual(
      VOTE_RULES.filter((r) => VOTE_RULE_NEEDS[r].attention),
      BAG_POOLINGS.filter((p) => BAG_POOLING[p].attention).map((p) => BAG_POOLING[p].vote),
      'only a pooling with attention votes by attention',
    );
  });
});
