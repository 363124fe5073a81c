/**
 * ONNX encoders as frozen bases: our own ResNet50 (res4) exported and re-imported gives the
 * native features; a tiny encoder the test writes trains a probe package that carries it and
 * predicts through it; files that are not ONNX, whose input disagrees with the recipe, or whose
 * output is not [batch, features] are clear errors; a package whose encoder went missing or
 * changed refuses to load.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import onnxProto from 'onnx-proto';

import { Catalog } from '../../src/acquire/catalog.js';
import { parseGroupRule } from '../../src/acquire/grouping.js';
import { importImages } from '../../src/acquire/import.js';
import { manualSeed, Network } from '../../src/engine/network.js';
import { networkToOnnx } from '../../src/engine/onnx-graph.js';
import { OnnxEncoder } from '../../src/engine/onnx-encoder.js';
import { resnet50, smallCnn } from '../../src/engine/zoo.js';
import { readManifest } from '../../src/model/package.js';
import { Predictor } from '../../src/predict/predictor.js';
import { prepare } from '../../src/prepare/prepare.js';
import { resolveTrainConfig } from '../../src/train/config.js';
import { featureSpec } from '../../src/engine/zoo.js';
import { train } from '../../src/train/trainer.js';
import { workspaceAt } from '../../src/workspace.js';
import { tempDir } from '../fixtures.js';
import { hasShared, lymphomaDir } from '../helpers.js';
import { realPatches } from '../real-patches.js';
import { fieldsOf } from '../slide-fixtures.js';

const MPP = 0.32 / 0.3;
const isOnnxError = (pattern: RegExp) => (e: Error & { code?: string }) =>
  e.code === 'ERR_ONNX' && pattern.test(e.message);

/** A network's features (without its classifier) as an ONNX file; the network too. */
async function exportFeatures(
  spec: ReturnType<typeof smallCnn>,
  file: string,
  input: 'uint8-nhwc' | 'float-nchw' = 'uint8-nhwc',
): Promise<Network> {
  manualSeed(3);
  const network = await Network.create(featureSpec(spec));
  writeFileSync(
    file,
    networkToOnnx(network.spec, await network.exportTensors(), {
      producerVersion: 'test',
      output: 'features',
      input,
    }),
  );
  return network;
}

/** An encoder at the test's um/px, its input fed as it is (mean 0, std 1). */
function openEncoder(onnx: string, inputSize: number): Promise<OnnxEncoder> {
  return OnnxEncoder.open({ onnx, inputSize, mpp: MPP, mean: [0, 0, 0], std: [1, 1, 1] });
}

function maxRelativeDifference(a: Float32Array, b: Float32Array): number {
  let most = 0;
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) {
    most = Math.max(most, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
    scale = Math.max(scale, Math.abs(b[i] ?? 0));
  }
  return most / scale;
}

describe('ONNX encoders', { skip: !hasShared(lymphomaDir) && 'needs ../shared' }, () => {
  it('our ResNet50 (res4), exported and opened as an encoder, gives the native features to 1e-4, in either input layout', async () => {
    const dir = tempDir();
    const spec = resnet50({ inputSize: 96, depth: 'res4', head: { classes: 3, pooling: 'avg' } });
    const native = await exportFeatures(spec, path.join(dir, 'resnet.onnx'));
    await exportFeatures(spec, path.join(dir, 'resnet-float.onnx'), 'float-nchw');
    const patches = await realPatches(16, 96);
    const expected = await native.predict(patches, { raw: true });
    const uint8 = await openEncoder(path.join(dir, 'resnet.onnx'), 96);
    assert.equal(uint8.dims, 1024);
    const a = maxRelativeDifference(await uint8.features(patches), expected);
    // PyTorch's convention: RGB in [0, 1], then (x - mean) / std; std 1/255 gives back the pixel values.
    const float = await OnnxEncoder.open({
      onnx: path.join(dir, 'resnet-float.onnx'),
      inputSize: 96,
      mpp: MPP,
      mean: [0, 0, 0],
      std: [1 / 255, 1 / 255, 1 / 255],
    });
    const b = maxRelativeDifference(await float.features(patches), expected);
    process.stdout.write(
      `# ResNet50 res4 as an encoder: features within ${a.toExponential(2)} (uint8), ${b.toExponential(2)} (float) of their scale\n`,
    );
    assert.ok(a <= 1e-4 && b <= 1e-4);
    await uint8.close();
    await float.close();
  });

  it('refuses a file that is not ONNX, an input that disagrees with the recipe, and an output that is not [batch, features]', async () => {
    const dir = tempDir();
    writeFileSync(path.join(dir, 'not.onnx'), 'this is a text file');
    await assert.rejects(openEncoder(path.join(dir, 'not.onnx'), 32), isOnnxError(/not an ONNX model/));
    await exportFeatures(
      smallCnn({ inputSize: 32, filters: [8, 16], head: { classes: 3, pooling: 'avg' } }),
      path.join(dir, 'tiny.onnx'),
    );
    await assert.rejects(
      openEncoder(path.join(dir, 'tiny.onnx'), 64),
      isOnnxError(/declares 64x64 patches but the encoder's input is \[batch, 32, 32, 3\]/),
    );
    // A graph whose output keeps the image's shape: not one vector per patch.
    const { onnx } = onnxProto;
    const type = (dims: (number | string)[]) => ({
      tensorType: {
        elemType: 1,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    });
    const model = onnx.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'spatial',
        node: [{ opType: 'Relu', input: ['x'], output: ['y'] }],
        input: [{ name: 'x', type: type(['batch', 3, 32, 32]) }],
        output: [{ name: 'y', type: type(['batch', 3, 32, 32]) }],
      },
    });
    writeFileSync(path.join(dir, 'spatial.onnx'), onnx.ModelProto.encode(model).finish());
    await assert.rejects(
      openEncoder(path.join(dir, 'spatial.onnx'), 32),
      isOnnxError(/is \[1, 3, 32, 32\] for one patch; a \[batch, features\] output is needed/),
    );
  });

  it('a probe on a tiny encoder: the package carries it, predicts through it, and refuses to load without it', async () => {
    const images = tempDir();
    for (const c of ['CLL', 'FL', 'MCL']) {
      mkdirSync(path.join(images, c));
      for (const file of fieldsOf(c, 4)) copyFileSync(file, path.join(images, c, path.basename(file)));
    }
    const workspace = workspaceAt(tempDir());
    const catalog = Catalog.open(workspace);
    await importImages(catalog, workspace, images, { groupBy: parseGroupRule('sj') });
    await prepare(catalog, workspace, {
      name: 'fields',
      recipe: { normalisation: 'none', mpp: MPP, patchSize: 32, stride: 32 },
    });
    const encoderFile = path.join(tempDir(), 'tiny.onnx');
    await exportFeatures(
      smallCnn({ inputSize: 32, filters: [8, 16], head: { classes: 3, pooling: 'avg' } }),
      encoderFile,
    );
    const base = {
      name: 'encoded',
      store: 'fields',
      architecture: 'small_cnn',
      method: 'probe',
      threads: 2,
    } as const;
    await assert.rejects(
      train(
        workspace,
        resolveTrainConfig({ ...base, encoder: { onnx: encoderFile, inputSize: 64, mpp: MPP } }),
      ),
      /the encoder takes 64 px patches .* but the recipe's are 32 px/,
    );
    const result = await train(
      workspace,
      resolveTrainConfig({
        ...base,
        encoder: { onnx: encoderFile, inputSize: 32, mpp: MPP, mean: [0, 0, 0], std: [1, 1, 1] },
      }),
    );
    const manifest = readManifest(result.packageDir);
    assert.equal(manifest.encoder?.file, 'encoder.onnx');
    assert.equal(manifest.encoder?.dims, 16);
    assert.match(manifest.encoder?.sha256 ?? '', /^[0-9a-f]{64}$/);
    const predictor = await Predictor.load(result.packageDir);
    const [prediction] = await predictor.predictImagesSettled([{ source: fieldsOf('FL', 1)[0] ?? '' }]);
    assert.notEqual(prediction?.status, 'refused');
    await predictor.close();

    // Attention pooling on the encoder's features: the package carries the encoder and the head.
    const pooled = await train(
      workspace,
      resolveTrainConfig({
        ...base,
        name: 'encoded-mil',
        method: 'mil',
        mil: { projection: 8, attention: 4, epochs: 3 },
        encoder: { onnx: encoderFile, inputSize: 32, mpp: MPP, mean: [0, 0, 0], std: [1, 1, 1] },
      }),
    );
    assert.equal(pooled.manifest.encoder?.dims, 16);
    assert.equal(pooled.manifest.mil?.pooling, 'attention');
    assert.equal(pooled.manifest.spec.name, 'onnx_encoder_features');
    const milPredictor = await Predictor.load(pooled.packageDir);
    const [answer] = await milPredictor.predictImages([{ source: fieldsOf('FL', 1)[0] ?? '' }]);
    assert.equal(answer?.rule, 'attention');
    assert.equal(answer?.grid.attention?.length, answer?.grid.cells.length);
    await milPredictor.close();
    catalog.close();

    writeFileSync(path.join(result.packageDir, 'encoder.onnx'), Buffer.from('changed'));
    await assert.rejects(
      Predictor.load(result.packageDir),
      (e: Error & { code?: string }) => e.code === 'ERR_ONNX' || e.code === 'ERR_MODEL_PACKAGE',
    );
    rmSync(path.join(result.packageDir, 'encoder.onnx'));
    await assert.rejects(
      Predictor.load(result.packageDir),
      (e: Error & { code?: string }) => e.code === 'ERR_MODEL_PACKAGE' && /missing/.test(e.message),
    );
  });
});
