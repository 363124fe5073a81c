/**
 * What runs a package's network forward: the addon or ONNX Runtime on its spec and weights, or,
 * for a package whose base is an ONNX encoder, that encoder (checked by its SHA-256) and the
 * package's linear head.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import type { Network } from '../engine/network.js';
import {
  openPatchRunner,
  resolveInferenceEngine,
  type InferenceEngineSetting,
  type PatchRunner,
} from '../engine/inference-engine.js';
import { encoderRunner, OnnxEncoder } from '../engine/onnx-encoder.js';
import { CLASSIFIER_LAYER } from '../engine/zoo.js';
import { PackageError, softwareVersion, type ModelManifest } from './package.js';

export async function openPackageRunner(
  dir: string,
  manifest: ModelManifest,
  network: Network,
  options: { bf16: boolean; engine: InferenceEngineSetting },
): Promise<PatchRunner> {
  const packaged = manifest.encoder;
  if (!packaged)
    return openPatchRunner(network, resolveInferenceEngine(options.engine, options.bf16), softwareVersion());
  const file = path.join(dir, packaged.file);
  if (!existsSync(file))
    throw new PackageError(`${dir} runs on the ONNX encoder ${packaged.file}, which is missing from it`);
  const encoder = await OnnxEncoder.open({
    onnx: file,
    inputSize: packaged.inputSize,
    mpp: packaged.mpp,
    mean: packaged.mean,
    std: packaged.std,
    ...(packaged.output ? { output: packaged.output } : {}),
  });
  if (encoder.sha256 !== packaged.sha256 || encoder.dims !== packaged.dims) {
    await encoder.close();
    throw new PackageError(
      `${file} is not the encoder this package was trained on (SHA-256 ${encoder.sha256.slice(0, 12)}..., ` +
        `the package's ${packaged.sha256.slice(0, 12)}...)`,
    );
  }
  const tensors = await network.exportTensors();
  const find = (name: string): Float32Array => {
    const tensor = tensors.find((t) => t.name === `${CLASSIFIER_LAYER}.${name}`);
    if (!tensor) throw new PackageError(`${dir} lacks its head's ${name}`);
    return Float32Array.from(tensor.data);
  };
  return encoderRunner(encoder, {
    weight: find('weight'),
    bias: find('bias'),
    classes: manifest.classes.length,
  });
}
