import assert from 'node:assert/strict';
import { describe, it } from 'node:test';

import { EngineError, EngineInputError } from '../../src/errors.js';
import { loadEngine } from '../../src/engine/native.js';
import { manualSeed, Network } from '../../src/engine/network.js';
import type { LayerSpec, NetworkSpec } from '../../src/engine/spec.js';
import { smallCnn } from '../../src/engine/zoo.js';

const spec = (): NetworkSpec => smallCnn({ inputSize: 8, filters: [4], head: { classes: 3 } });

/** An 8x8 RGB input in the addon's own form: every field given, as the TypeScript spec fills them. */
const RAW_INPUT = {
  height: 8,
  width: 8,
  channels: 3,
  channelOrder: 'rgb',
  mean: [0, 0, 0],
  std: [1, 1, 1],
  bag: false,
};

function withLayers(layers: unknown[]): NetworkSpec {
  return { ...spec(), layers: layers as LayerSpec[] };
}

async function rejectsWith(
  promise: Promise<unknown>,
  type: new (...args: never[]) => Error,
  pattern: RegExp,
) {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof type, `expected ${type.name}, got ${String(error)}`);
    assert.match(error.message, pattern);
    return true;
  });
}

describe('engine errors', () => {
  it('rejects bad specs with a message naming the problem', async () => {
    await rejectsWith(
      Network.create(withLayers([{ type: 'lstm', name: 'x' }])),
      EngineInputError,
      /unknown layer type 'lstm'/,
    );
    await rejectsWith(
      Network.create(withLayers([{ type: 'linear', name: 'fc', units: 3 }])),
      EngineInputError,
      /linear needs a flat input/,
    );
    await rejectsWith(
      Network.create(
        withLayers([
          { type: 'conv2d', name: 'a', filters: 4, kernelSize: 3, padding: 'same' },
          { type: 'conv2d', name: 'a', filters: 4, kernelSize: 3, padding: 'same' },
        ]),
      ),
      EngineInputError,
      /used twice/,
    );
    await rejectsWith(
      Network.create(withLayers([{ type: 'globalAvgPool' }, { type: 'linear', name: 'fc', units: 5 }])),
      EngineInputError,
      /must end in \[3\]/,
    );
    await rejectsWith(
      Network.create(
        withLayers([{ type: 'conv2d', name: 'a', filters: 4, kernelSize: 3, padding: 'sideways' }]),
      ),
      EngineInputError,
      /padding must be 'same' or 'valid'/,
    );
    await rejectsWith(
      Network.create(
        withLayers([{ type: 'conv2d', name: 'a', filters: 4, kernelSize: 16, padding: 'valid' }]),
      ),
      EngineInputError,
      /too small/,
    );
    await rejectsWith(Network.create({ ...spec(), classes: 1 }), EngineInputError, /classes/);
    await rejectsWith(
      Network.create({ ...spec(), input: { ...spec().input, mean: [1, 2] } }),
      EngineInputError,
      /one finite number per channel/,
    );
  });

  it('rejects specs that bypass the TypeScript checks inside the addon, without crashing', async () => {
    const engine = loadEngine();
    await assert.rejects(
      engine.createNetwork({
        input: RAW_INPUT,
        classes: 3,
        layers: [{ type: 'linear', name: 'fc', inFeatures: 7, units: 3, useBias: true }],
      }),
      /does not fit together|shape/,
    );
    assert.throws(
      () => engine.createNetwork({ input: {}, classes: 3, layers: [] }),
      /missing field 'height'/,
    );
    assert.throws(() => engine.createNetwork({ classes: 3 }), /missing field 'input'/);
    // The addon keeps no defaults: a field the TypeScript spec would fill is required.
    assert.throws(
      () =>
        engine.createNetwork({
          input: RAW_INPUT,
          classes: 3,
          layers: [{ type: 'globalAvgPool' }, { type: 'linear', name: 'fc', inFeatures: 3, units: 3 }],
        }),
      /missing field 'useBias'/,
    );
  });

  it('rejects wrong batches, labels and options, and the network works afterwards', async () => {
    manualSeed(1);
    const network = await Network.create(spec());
    const good = new Uint8Array(2 * 8 * 8 * 3);
    const labels = Int32Array.from([0, 1]);
    await rejectsWith(network.trainStep(good, labels), EngineError, /configure an optimizer/);
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.01 });
    await rejectsWith(
      network.trainStep(new Uint8Array(100), labels),
      EngineInputError,
      /not a whole number of 8x8x3/,
    );
    await rejectsWith(
      network.trainStep(new Uint8Array(0), new Int32Array(0)),
      EngineInputError,
      /not a whole number/,
    );
    await rejectsWith(
      network.trainStep(new Int16Array(384) as unknown as Uint8Array, labels),
      EngineInputError,
      /Uint8Array/,
    );
    await rejectsWith(network.trainStep(good, Int32Array.from([0])), EngineInputError, /one label per image/);
    await rejectsWith(network.trainStep(good, Int32Array.from([0, 3])), EngineInputError, /outside 0..2/);
    await rejectsWith(
      network.trainStep(good, [0, 1] as unknown as Int32Array),
      EngineInputError,
      /Int32Array/,
    );
    await rejectsWith(
      network.trainStep(good, labels, { classWeights: [1, 1] }),
      EngineInputError,
      /classWeights/,
    );
    await rejectsWith(network.setLearningRate(Number.NaN), EngineInputError, /learning rate/);
    await rejectsWith(
      network.configureOptimizer({ type: 'sgd', learningRate: 0.1, nesterov: true }),
      EngineInputError,
      /Nesterov/,
    );
    await rejectsWith(
      network.configureOptimizer({ type: 'rmsprop', learningRate: 0.1 } as never),
      EngineInputError,
      /unknown optimizer/,
    );
    const result = await network.trainStep(good, labels);
    assert.equal(result.count, 2);
    assert.ok(Number.isFinite(result.loss));
  });

  it('calls the raw addon with wrong types and gets errors, not a crash', async () => {
    const network = await Network.create(spec());
    const raw = (await loadEngine().createNetwork({
      input: RAW_INPUT,
      classes: 3,
      layers: [
        { type: 'globalAvgPool' },
        { type: 'linear', name: 'fc', inFeatures: 3, units: 3, useBias: true },
      ],
    })) as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
    const call = (name: string, ...args: unknown[]): Promise<unknown> =>
      (async () => (raw[name] as (...a: unknown[]) => Promise<unknown>).apply(raw, args))();
    await assert.rejects(call('predict', 'pixels', [1, 8, 8, 3]), /Uint8Array/);
    await assert.rejects(call('predict', new Uint8Array(192), [1, 8, 8]), /shape/);
    await assert.rejects(call('predict', new Uint8Array(192), [1, 8, 8, 4]), /values/);
    await assert.rejects(
      call('predict', new Uint8Array(192), [1, 4, 16, 3], { bf16: false, raw: false, attention: false }),
      /network takes 8x8x3/,
    );
    await assert.rejects(
      call('trainStep', new Uint8Array(192), [1, 8, 8, 3], new Int32Array([9]), {}),
      /option 'flip' is missing/,
    );
    await assert.rejects(
      call('predict', new Uint8Array(192), [1, 8, 8, 3], { raw: false }),
      /option 'bf16' is missing/,
    );
    await assert.rejects(
      call('importTensors', [{ name: 'fc.weight', shape: [3, 3], data: new Float64Array(9) }], true),
      /Float32Array/,
    );
    await assert.rejects(call('loadOptimizerState', new Uint8Array([1, 2, 3])), /optimizer/);
    await assert.rejects(call('setTrainable', 'fc', true), /prefixes/);
    assert.ok((await network.predict(new Uint8Array(192))).length === 3, 'the engine still works');
  });

  it('rejects tensors of the wrong name or shape and leaves the weights untouched', async () => {
    const network = await Network.create(spec());
    const before = await network.exportTensors();
    const changed = before.map((t) => ({ ...t, data: new Float32Array(t.data.length).fill(0.5) }));
    const wrongShape = changed.map((t, i) => (i === 0 ? { ...t, shape: [t.data.length] } : t));
    await rejectsWith(
      network.importTensors(wrongShape),
      EngineInputError,
      /has shape .* but the network needs/,
    );
    await rejectsWith(
      network.importTensors(changed.slice(1)),
      EngineInputError,
      new RegExp(`missing 1 \\(first '${before[0]?.name ?? ''}'\\)`),
    );
    await rejectsWith(
      network.importTensors([...changed, { name: 'extra.weight', shape: [1], data: new Float32Array(1) }]),
      EngineInputError,
      /unexpected 1 \(first 'extra.weight'\)/,
    );
    await rejectsWith(
      network.importTensors([{ name: 'conv1.weight', shape: [2, 2], data: new Float32Array(3) }], {
        strict: false,
      }),
      EngineInputError,
      /holds 3 values but its shape needs 4/,
    );
    const after = await network.exportTensors();
    assert.deepEqual(after, before, 'a failed import changed nothing');
    const partial = await network.importTensors(changed.slice(0, 1), { strict: false });
    assert.equal(partial.loaded.length, 1);
    assert.equal(partial.missing.length, before.length - 1);
  });

  it('stops on a non-finite loss without updating the weights', async () => {
    const network = await Network.create(spec());
    await network.configureOptimizer({ type: 'sgd', learningRate: 0.01 });
    const tensors = await network.exportTensors();
    const poisoned = tensors.map((t) =>
      t.name === 'predictions.bias' ? { ...t, data: new Float32Array(t.data.length).fill(Number.NaN) } : t,
    );
    await network.importTensors(poisoned);
    const before = await network.exportTensors();
    await assert.rejects(network.trainStep(new Uint8Array(192), Int32Array.from([1])), (error: unknown) => {
      assert.ok(error instanceof EngineError);
      assert.equal(error.code, 'ERR_NONFINITE_LOSS');
      assert.match(error.message, /not finite.*Lower the learning rate/);
      return true;
    });
    const after = await network.exportTensors();
    for (const [i, t] of after.entries()) {
      if (!t.buffer) assert.deepEqual(t.data, before[i]?.data, `${t.name} changed`);
    }
  });
});
