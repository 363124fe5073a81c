import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { milHeadSpec } from '../../src/engine/mil-head.js';
import { manualSeed, Network, setThreads } from '../../src/engine/network.js';
import { bagInput } from '../../src/engine/spec.js';
import { seededRandom } from '../../src/random.js';

setThreads(2);

const FEATURES = 8;
const BAG = 12;

/** A bag of noise; in a positive bag one instance (at `key`) carries the signal on feature 0. */
function bag(random: () => number, positive: boolean, key: number): Float32Array {
  const x = new Float32Array(BAG * FEATURES);
  for (let i = 0; i < x.length; i++) x[i] = random() * 2 - 1;
  if (positive) x[key * FEATURES] = 4;
  return x;
}

const softmax = (v: number[]): number[] => {
  const m = Math.max(...v);
  const e = v.map((x) => Math.exp(x - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / s);
};

describe('attention pooling in the engine', () => {
  it('learns which instance makes a bag positive, and its bag logits are the attention-weighted instance logits', async () => {
    manualSeed(3);
    const random = seededRandom(11);
    const network = await Network.create(
      milHeadSpec({
        features: FEATURES,
        classes: 2,
        pooling: 'attention',
        projection: 16,
        attention: 8,
        dropout: 0,
      }),
    );
    await network.configureOptimizer({ type: 'adam', learningRate: 5e-3 });
    for (let step = 0; step < 400; step++) {
      const positive = step % 2 === 0;
      const x = bag(random, positive, Math.floor(random() * BAG));
      await network.trainStep(x, Int32Array.of(positive ? 1 : 0));
    }
    let right = 0;
    let keyOnTop = 0;
    for (let t = 0; t < 40; t++) {
      const positive = t % 2 === 0;
      const key = (t * 5) % BAG;
      const x = bag(random, positive, key);
      const { values, attention } = await network.predictWithAttention(x, { raw: true });
      right += (values[1] ?? 0) > (values[0] ?? 0) === positive ? 1 : 0;
      const scores = Array.from(attention);
      assert.equal(scores.length, BAG);
      if (positive && scores.indexOf(Math.max(...scores)) === key) keyOnTop++;
      // Each instance as a bag of one: its logits; weighted by the bag's softmax of its scores, the bag's.
      const instances = await network.predict(x, { raw: true, bagSize: 1 });
      const weights = softmax(scores);
      for (let c = 0; c < 2; c++) {
        const pooled = weights.reduce((sum, w, i) => sum + w * (instances[i * 2 + c] ?? 0), 0);
        assert.ok(Math.abs(pooled - (values[c] ?? 0)) < 1e-4, `class ${c}: ${pooled} vs ${values[c]}`);
      }
    }
    assert.ok(right >= 36, `held-out bags right: ${right}/40`);
    assert.ok(keyOnTop >= 18, `the key instance has the top weight in ${keyOnTop}/20 positive bags`);
  });

  it('pools by the mean too, takes bags of any size, and refuses what does not fit', async () => {
    const network = await Network.create(
      milHeadSpec({
        features: FEATURES,
        classes: 3,
        pooling: 'mean',
        projection: 4,
        attention: 4,
        dropout: 0.25,
      }),
    );
    const probabilities = await network.predict(new Float32Array(5 * FEATURES).fill(0.5));
    assert.equal(probabilities.length, 3);
    assert.equal((await network.predict(new Float32Array(6 * FEATURES), { bagSize: 2 })).length, 9);
    await assert.rejects(network.predict(new Float32Array(5 * FEATURES), { bagSize: 2 }), {
      code: 'ERR_ENGINE_INPUT',
    });
    await assert.rejects(network.predictWithAttention(new Float32Array(FEATURES)), /attention/);
    await assert.rejects(
      Network.create({ name: 'x', input: { ...bagInput(4), width: 3 }, classes: 2, layers: [] }),
      { code: 'ERR_ENGINE_INPUT', message: /width 1/ },
    );
  });
});
