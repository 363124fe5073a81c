/**
 * What runs a package's network forward: the addon or ONNX Runtime on its spec and weights, or,
 * for a package whose base is an ONNX encoder, that encoder (checked by its SHA-256) and the
 * package's linear head.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';

import { Network } from '../engine/network.js';
import { beforeClassifier, classifierHead, linearHeadRunner } from '../engine/linear-head.js';
import {
  openPatchRunner,
  resolveInferenceEngine,
  type InferenceEngineSetting,
  type PatchRunner,
} from '../engine/inference-engine.js';
import { encoderFeatureRunner, encoderRunner, OnnxEncoder } from '../engine/onnx-encoder.js';
import { milRunner } from '../engine/mil-head.js';
import { CLASSIFIER_LAYER } from '../engine/zoo.js';
import { loadPackageNetwork, PackageError, softwareVersion, type ModelManifest } from './package.js';

/** A package read and its networks built, with the runner its patches go through. */
export async function loadPackageRunner(
  dir: string,
  options: { bf16: boolean; engine: InferenceEngineSetting },
): Promise<{ manifest: ModelManifest; network: Network; runner: PatchRunner }> {
  const { manifest, network, milHead } = await loadPackageNetwork(dir);
  return { manifest, network, runner: await openPackageRunner(dir, manifest, network, options, milHead) };
}

export async function openPackageRunner(
  dir: string,
  manifest: ModelManifest,
  network: Network,
  options: { bf16: boolean; engine: InferenceEngineSetting },
  milHead: Network | null = null,
): Promise<PatchRunner> {
  if (!manifest.mil) return openPatchNetwork(dir, manifest, network, options);
  if (!milHead) throw new PackageError(`${dir}: its multiple-instance head was not loaded`);
  return milRunner(await openPatchNetwork(dir, manifest, network, options), milHead);
}

/** What runs on each patch: the package's network, or its encoder (then its linear head, unless the package pools by MIL). */
async function openPatchNetwork(
  dir: string,
  manifest: ModelManifest,
  network: Network,
  options: { bf16: boolean; engine: InferenceEngineSetting },
): Promise<PatchRunner> {
  const packaged = manifest.encoder;
  if (!packaged) return openZooNetwork(manifest, network, options);
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
  if (manifest.mil) return encoderFeatureRunner(encoder);
  const head = classifierHead(await network.exportTensors(), manifest.classes.length);
  if (!head) throw new PackageError(`${dir} lacks its head's weights`);
  return encoderRunner(encoder, head);
}

/**
 * A zoo network ending in its classifier runs as the network before it and the classifier in
 * TypeScript (engine/linear-head.ts): one pass gives the logits and the features an input's
 * atypicality is measured on. A multiple-instance package's network is its feature network already.
 */
async function openZooNetwork(
  manifest: ModelManifest,
  network: Network,
  options: { bf16: boolean; engine: InferenceEngineSetting },
): Promise<PatchRunner> {
  const engine = resolveInferenceEngine(options.engine, options.bf16);
  const body = manifest.mil ? undefined : beforeClassifier(manifest.spec);
  const tensors = await network.exportTensors();
  const head = classifierHead(tensors, manifest.classes.length);
  if (!body || !head) return openPatchRunner(network, engine, softwareVersion());
  const base = await Network.create(body);
  await base.importTensors(tensors.filter((t) => !t.name.startsWith(`${CLASSIFIER_LAYER}.`)));
  return linearHeadRunner(await openPatchRunner(base, engine, softwareVersion()), head);
}
