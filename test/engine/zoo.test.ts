import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import {
  engineShape,
  engineTensorName,
  kerasToEngine,
  parseKerasWeightName,
} from '../../src/engine/weights/keras-layout.js';
import { Network } from '../../src/engine/network.js';
import { makeDivisible, mobilenetV1Imagenet, mobilenetV2, smallCnn, vgg16 } from '../../src/engine/zoo.js';
import { hasShared, weightsDir } from '../helpers.js';

interface Manifest {
  weightsManifest: { weights: { name: string; shape: number[] }[] }[];
}

function manifestWeights(dir: string): { name: string; shape: number[] }[] {
  const model = JSON.parse(readFileSync(path.join(weightsDir, dir, 'model.json'), 'utf8')) as Manifest;
  return model.weightsManifest.flatMap((group) => group.weights);
}

/** Every Keras weight of the manifest has an engine tensor of the converted shape, and vice versa. */
async function assertCovers(
  network: Network,
  weights: { name: string; shape: number[] }[],
  ownHead = '',
): Promise<void> {
  const tensors = new Map((await network.exportTensors()).map((t) => [t.name, t.shape]));
  const covered = new Set<string>();
  for (const w of weights) {
    const parsed = parseKerasWeightName(w.name);
    assert.ok(parsed, `cannot read ${w.name}`);
    const name = engineTensorName(parsed.layer, parsed.role);
    const shape = tensors.get(name);
    assert.ok(shape, `${w.name} has no engine tensor ${name}`);
    const expected = engineShape(parsed.role, w.shape);
    const fits =
      shape.join() === expected.join() ||
      (w.shape[0] === 1 && w.shape[1] === 1 && shape.join() === [w.shape[3], w.shape[2]].join());
    assert.ok(fits, `${w.name} [${w.shape.join(',')}] does not fit ${name} [${shape.join(',')}]`);
    covered.add(name);
  }
  const uncovered = [...tensors.keys()].filter((n) => !covered.has(n) && !(ownHead && n.startsWith(ownHead)));
  assert.deepEqual(uncovered, [], 'engine tensors with no Keras weight');
}

describe('model zoo', () => {
  it('builds VGG16 with Keras layer names, weight shapes and parameter count', async () => {
    const network = await Network.create(
      vgg16({ inputSize: 64, head: { classes: 3, pooling: 'flatten', hidden: [256], dropout: 0.5 } }),
    );
    const tensors = await network.exportTensors();
    const convs = tensors.filter((t) => t.name.startsWith('block') && t.name.endsWith('.weight'));
    assert.deepEqual(
      convs.map((t) => t.name.replace('.weight', '')),
      [
        'block1_conv1',
        'block1_conv2',
        'block2_conv1',
        'block2_conv2',
        'block3_conv1',
        'block3_conv2',
        'block3_conv3',
        'block4_conv1',
        'block4_conv2',
        'block4_conv3',
        'block5_conv1',
        'block5_conv2',
        'block5_conv3',
      ],
    );
    assert.deepEqual(tensors.find((t) => t.name === 'block3_conv1.weight')?.shape, [256, 128, 3, 3]);
    // Keras VGG16 notop has 14,714,688 parameters; the head adds flatten(2x2x512) -> 256 -> 3.
    assert.equal(network.spec.parameterCount, 14_714_688 + (2048 * 256 + 256) + (256 * 3 + 3));
    assert.deepEqual(network.spec.input.mean, [103.939, 116.779, 123.68]);
    assert.equal(network.spec.input.channelOrder, 'bgr');
  });

  it('maps Keras kernels onto engine layouts', () => {
    // conv [kh, kw, in, out] = [1, 2, 2, 3]: value encodes its Keras index.
    const conv = kerasToEngine(
      'c',
      'kernel',
      [1, 2, 2, 3],
      Float32Array.from({ length: 12 }, (_, i) => i),
    );
    assert.deepEqual(conv.shape, [3, 2, 1, 2]);
    // engine [o][i][0][x] = keras [0][x][i][o] = (x * 2 + i) * 3 + o
    assert.equal(conv.data[((2 * 2 + 1) * 1 + 0) * 2 + 1], (1 * 2 + 1) * 3 + 2);
    const dense = kerasToEngine('d', 'kernel', [2, 3], Float32Array.from([0, 1, 2, 3, 4, 5]));
    assert.deepEqual(dense.shape, [3, 2]);
    assert.deepEqual([...dense.data], [0, 3, 1, 4, 2, 5]);
    const depthwise = kerasToEngine('dw', 'depthwise_kernel', [1, 1, 2, 2], Float32Array.from([0, 1, 2, 3]));
    assert.deepEqual(depthwise.shape, [4, 1, 1, 1]);
    assert.deepEqual([...depthwise.data], [0, 1, 2, 3]);
    const preds = kerasToEngine(
      'conv_preds',
      'kernel',
      [1, 1, 2, 3],
      Float32Array.from([0, 1, 2, 3, 4, 5]),
      [3, 2],
    );
    assert.deepEqual(preds.shape, [3, 2]);
    assert.equal(preds.name, 'conv_preds.weight');
    assert.deepEqual(parseKerasWeightName('block1_conv1/block1_conv1_W_1:0'), {
      layer: 'block1_conv1',
      role: 'kernel',
    });
    assert.deepEqual(parseKerasWeightName('block1_conv1/block1_conv1/bias:0'), {
      layer: 'block1_conv1',
      role: 'bias',
    });
    assert.deepEqual(parseKerasWeightName('conv_dw_1_bn/moving_variance'), {
      layer: 'conv_dw_1_bn',
      role: 'moving_variance',
    });
  });

  it('rounds MobileNet v2 channels as Keras does', () => {
    assert.equal(makeDivisible(32 * 0.35), 16);
    assert.equal(makeDivisible(Math.trunc(320 * 0.35)), 112);
    assert.equal(makeDivisible(Math.trunc(24 * 0.35)), 8);
  });

  it(
    'has a tensor for every weight of the real MobileNet v1 0.25 ImageNet model, shape for shape',
    { skip: !hasShared(weightsDir) && 'needs ../shared/weights' },
    async () => {
      const network = await Network.create(mobilenetV1Imagenet({ alpha: 0.25 }));
      await assertCovers(network, manifestWeights('mobilenet_v1_0.25_224_imagenet_tfjs'));
    },
  );

  it(
    'has a tensor for every weight of the real MobileNet v2 0.35 backbone, shape for shape',
    { skip: !hasShared(weightsDir) && 'needs ../shared/weights' },
    async () => {
      const network = await Network.create(
        mobilenetV2({ alpha: 0.35, inputSize: 224, head: { classes: 3 } }),
      );
      const backbone = manifestWeights('mobilenet_v2_0.35_224_imagenet_backbone_tfjs').filter(
        (w) => !w.name.startsWith('dense'),
      );
      const tensors = await network.exportTensors();
      const head = tensors.filter((t) => t.name.startsWith('predictions'));
      assert.equal(head.length, 2);
      // The backbone alone: 410,208 Keras parameters including batch-norm statistics.
      const backboneCount = tensors
        .filter((t) => !t.name.startsWith('predictions'))
        .reduce((n, t) => n + t.data.length, 0);
      assert.equal(backboneCount, 410_208);
      // 263 weights, less the unrelated user head (dense_Dense1, dense_Dense2) of the export.
      assert.equal(backbone.length, 260);
      await assertCovers(network, backbone, 'predictions.');
    },
  );

  it('runs MobileNet v2 on odd and even input sizes and a small CNN on any size', async () => {
    for (const size of [63, 64, 96]) {
      const network = await Network.create(
        mobilenetV2({ alpha: 0.35, inputSize: size, head: { classes: 3 } }),
      );
      const probs = await network.predict(new Uint8Array(2 * size * size * 3).fill(128));
      assert.equal(probs.length, 6);
    }
    const cnn = await Network.create(
      smallCnn({ inputSize: 40, head: { classes: 4, hidden: [8], dropout: 0.2 } }),
    );
    assert.equal((await cnn.predict(new Uint8Array(40 * 40 * 3))).length, 4);
  });
});
