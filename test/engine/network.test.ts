import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { manualSeed, Network, setThreads, type ExportedTensor } from '../../src/engine/network.js';
import type { NetworkSpec } from '../../src/engine/spec.js';
import { makePatternSet, sliceBatch } from '../../src/engine/synthetic.js';
import { smallCnn } from '../../src/engine/zoo.js';
import { accuracy, argmaxRows } from '../helpers.js';

setThreads(2);

const tinySpec = (): NetworkSpec =>
  smallCnn({ inputSize: 16, filters: [8, 16], head: { classes: 3, hidden: [16], dropout: 0.3 } });

function sameBytes(a: Float32Array | undefined, b: Float32Array | undefined): boolean {
  if (!a || !b) return false;
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(
    Buffer.from(b.buffer, b.byteOffset, b.byteLength),
  );
}

function tensorMap(tensors: ExportedTensor[]): Map<string, ExportedTensor> {
  return new Map(tensors.map((t) => [t.name, t]));
}

async function trainEpochs(
  network: Network,
  set: ReturnType<typeof makePatternSet>,
  epochs: number,
  augment = false,
): Promise<{ loss: number; accuracy: number }> {
  let last = { loss: 0, accuracy: 0 };
  for (let e = 0; e < epochs; e++) {
    let correct = 0;
    let loss = 0;
    let batches = 0;
    for (let i = 0; i < set.count; i += 32) {
      const { images, labels } = sliceBatch(set, i, Math.min(i + 32, set.count));
      const r = await network.trainStep(images, labels, { augment: { flip: augment, rotate90: augment } });
      correct += r.correct;
      loss += r.loss;
      batches++;
    }
    last = { loss: loss / batches, accuracy: correct / set.count };
  }
  return last;
}

describe('Network', () => {
  it('learns a generated 3-class pattern set to near-100% within seconds', async () => {
    manualSeed(1);
    const set = makePatternSet(192, 32, 1);
    const network = await Network.create(smallCnn({ inputSize: 32, head: { classes: 3 } }));
    await network.configureOptimizer({ type: 'adam', learningRate: 3e-3 });
    const started = Date.now();
    const result = await trainEpochs(network, set, 6, true);
    assert.ok(result.accuracy >= 0.97, `training accuracy ${result.accuracy}`);
    const predicted = argmaxRows(await network.predict(set.images), 3);
    assert.ok(accuracy(predicted, set.labels) >= 0.97, 'eval-mode accuracy on the training set');
    const heldOut = makePatternSet(96, 32, 2);
    const heldOutAccuracy = accuracy(argmaxRows(await network.predict(heldOut.images), 3), heldOut.labels);
    assert.ok(heldOutAccuracy >= 0.9, `held-out accuracy ${heldOutAccuracy}`);
    // Informative, not asserted: seconds on a 2-core machine.
    console.log(`# learned in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  });

  it('round-trips exported parameters bit-exactly into a fresh network', async () => {
    manualSeed(2);
    const a = await Network.create(tinySpec());
    await a.configureOptimizer({ type: 'sgd', learningRate: 0.05, momentum: 0.9 });
    await trainEpochs(a, makePatternSet(64, 16, 3), 1);
    const exported = await a.exportTensors();
    manualSeed(99);
    const b = await Network.create(tinySpec());
    const report = await b.importTensors(exported);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unexpected, []);
    assert.equal(report.loaded.length, exported.length);
    const again = tensorMap(await b.exportTensors());
    for (const t of exported) {
      const other = again.get(t.name);
      assert.ok(other, t.name);
      assert.deepEqual(other.shape, t.shape);
      assert.ok(sameBytes(other.data, t.data), `${t.name} differs`);
    }
    const batch = makePatternSet(8, 16, 4).images;
    assert.deepEqual(await b.predict(batch), await a.predict(batch));
    assert.ok(
      exported.some((t) => t.buffer && t.name.endsWith('running_mean')),
      'batch-norm statistics exported',
    );
  });

  it('keeps frozen weights and their batch-norm statistics unchanged while training the rest', async () => {
    manualSeed(3);
    const network = await Network.create(tinySpec());
    const frozen = await network.freeze(['conv1']);
    assert.equal(frozen, 3, 'conv1.weight, conv1_bn.weight and conv1_bn.bias');
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.1, momentum: 0.9, weightDecay: 0.01 });
    const before = tensorMap(await network.exportTensors());
    await trainEpochs(network, makePatternSet(64, 16, 5), 2);
    const after = tensorMap(await network.exportTensors());
    for (const [name, t] of before) {
      const now = after.get(name);
      assert.ok(now);
      const same = sameBytes(now.data, t.data);
      if (name.startsWith('conv1.') || name.startsWith('conv1_bn.')) {
        assert.ok(same, `${name} changed although frozen`);
        if (!t.buffer) assert.equal(now.trainable, false);
      } else if (!t.buffer) {
        assert.ok(!same, `${name} did not train`);
      }
    }
    // Unfreezing lets them train again.
    await network.unfreeze(['conv1']);
    await trainEpochs(network, makePatternSet(32, 16, 6), 1);
    const later = tensorMap(await network.exportTensors());
    const conv1 = later.get('conv1.weight');
    assert.ok(!sameBytes(conv1?.data, before.get('conv1.weight')?.data), 'conv1 trains once unfrozen');
  });

  it('predicts deterministically in eval mode, dropout notwithstanding', async () => {
    manualSeed(4);
    const network = await Network.create(tinySpec());
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.01 });
    await trainEpochs(network, makePatternSet(32, 16, 7), 1);
    const batch = makePatternSet(16, 16, 8).images;
    const first = await network.predict(batch);
    const second = await network.predict(batch);
    assert.deepEqual(first, second);
    for (let i = 0; i < 16; i++) {
      const sum = (first[i * 3] ?? 0) + (first[i * 3 + 1] ?? 0) + (first[i * 3 + 2] ?? 0);
      assert.ok(Math.abs(sum - 1) < 1e-5, 'softmax rows sum to 1');
    }
  });

  it('repeats a training run exactly for the same seed', async () => {
    const runOnce = async (): Promise<number[]> => {
      manualSeed(5);
      const network = await Network.create(tinySpec());
      await network.configureOptimizer({ type: 'adamw', learningRate: 1e-3, weightDecay: 1e-4 });
      const set = makePatternSet(64, 16, 9);
      const losses: number[] = [];
      for (let i = 0; i < 64; i += 16) {
        const { images, labels } = sliceBatch(set, i, i + 16);
        losses.push(
          (await network.trainStep(images, labels, { augment: { flip: true, rotate90: true } })).loss,
        );
      }
      return losses;
    };
    assert.deepEqual(await runOnce(), await runOnce());
  });

  it('resumes from saved optimizer state exactly as if never stopped', async () => {
    const set = makePatternSet(64, 16, 10);
    const step = (n: Network, i: number): Promise<unknown> => {
      const { images, labels } = sliceBatch(set, i * 16, i * 16 + 16);
      return n.trainStep(images, labels);
    };
    const noDropout = (): NetworkSpec => smallCnn({ inputSize: 16, filters: [8], head: { classes: 3 } });
    manualSeed(6);
    const a = await Network.create(noDropout());
    await a.configureOptimizer({ type: 'sgd', learningRate: 0.05, momentum: 0.9, nesterov: true });
    await step(a, 0);
    await step(a, 1);
    const weights = await a.exportTensors();
    const state = await a.saveOptimizerState();
    assert.ok(state.length > 0);
    const b = await Network.create(noDropout());
    await b.importTensors(weights);
    await b.configureOptimizer({ type: 'sgd', learningRate: 0.05, momentum: 0.9, nesterov: true });
    await b.loadOptimizerState(state);
    await step(a, 2);
    await step(b, 2);
    const wa = tensorMap(await a.exportTensors());
    for (const t of await b.exportTensors()) {
      assert.deepEqual(t.data, wa.get(t.name)?.data, `${t.name} diverged after resume`);
    }
  });

  it('follows a changed learning rate between steps', async () => {
    manualSeed(7);
    const network = await Network.create(tinySpec());
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.1 });
    await network.setLearningRate(1e-12);
    const before = tensorMap(await network.exportTensors());
    await trainEpochs(network, makePatternSet(32, 16, 11), 1);
    const after = await network.exportTensors();
    for (const t of after.filter((x) => !x.buffer)) {
      const old = before.get(t.name)?.data ?? new Float32Array();
      const maxChange = t.data.reduce((m, v, i) => Math.max(m, Math.abs(v - (old[i] ?? 0))), 0);
      assert.ok(maxChange < 1e-6, `${t.name} moved ${maxChange} at a learning rate of 1e-12`);
    }
  });

  it('pads like Keras: stride-2 same padding adds the extra row and column after', async () => {
    const spec: NetworkSpec = {
      name: 'probe',
      input: { height: 4, width: 4, channels: 1, channelOrder: 'rgb', mean: [0], std: [1] },
      classes: 2,
      layers: [
        { type: 'conv2d', name: 'c', filters: 1, kernelSize: 3, strides: 2, padding: 'same', useBias: false },
        { type: 'flatten' },
        { type: 'linear', name: 'pick', units: 2, useBias: false },
      ],
    };
    const network = await Network.create(spec);
    const pickTopLeft = new Float32Array(8);
    pickTopLeft[0] = 0.01; // logit 0 = 0.01 * out[0,0]; logit 1 = 0
    await network.importTensors([
      { name: 'c.weight', shape: [1, 1, 3, 3], data: new Float32Array(9).fill(1) },
      { name: 'pick.weight', shape: [2, 4], data: pickTopLeft },
    ]);
    const pixels = Uint8Array.from({ length: 16 }, (_, i) => i);
    const [p0] = await network.predict(pixels);
    // Keras pads 0 before and 1 after: out[0,0] sums rows 0-2 and columns 0-2 = 45.
    const expected = 1 / (1 + Math.exp(-0.45));
    assert.ok(Math.abs((p0 ?? 0) - expected) < 1e-5, `p0 ${p0} vs ${expected}`);
  });

  it('keeps the event loop free while a step computes', async () => {
    manualSeed(8);
    const network = await Network.create(smallCnn({ inputSize: 64, head: { classes: 3 } }));
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.01 });
    const set = makePatternSet(128, 64, 12);
    let ticks = 0;
    const timer = setInterval(() => ticks++, 1);
    let settled = false;
    const steps = (async () => {
      for (let i = 0; i < 12; i++) await network.trainStep(set.images, set.labels);
    })().finally(() => (settled = true));
    await new Promise((resolve) => setTimeout(resolve, 20));
    const ticksWhileBusy = ticks;
    assert.equal(settled, false, 'the steps should still be running');
    await steps;
    clearInterval(timer);
    assert.ok(ticksWhileBusy >= 3, `only ${ticksWhileBusy} timer ticks while training ran`);
  });
});
