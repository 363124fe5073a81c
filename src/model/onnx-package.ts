/**
 * A model package leaving pathotype: its whole network as one ONNX graph, beside a JSON sidecar
 * with what a graph cannot say (classes, patch geometry in microns per pixel, the stain
 * normaliser to apply before cutting patches, the vote rule and the calibration, and in
 * `reproduce` every step from image file to answer), and a check that ONNX Runtime gives the
 * addon's outputs on the same patches.
 */
import { createHash } from 'node:crypto';
import { mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { PathotypeError } from '../errors.js';
import { Network } from '../engine/network.js';
import { nhwcToNchwFloat, OnnxSession } from '../engine/onnx-runtime.js';
import { seededRandom } from '../random.js';
import { mppOf } from '../image/preprocess.js';
import { featureSpec } from '../engine/zoo.js';
import { networkToOnnx, ONNX_OPSETS, type OnnxInputLayout } from '../engine/onnx-graph.js';
import { hasAttention, loadPackageNetwork, softwareVersion, type ModelManifest } from './package.js';
import { milRunner, perPatchExport } from '../engine/mil-head.js';
import { BAG_POOLING, type BagPooling } from '../engine/pooling.js';
import { addonRunner } from '../engine/inference-engine.js';
import { reproductionOf } from './reproduction.js';

/** The sidecar's format: a different major is not read the same way. */
export const ONNX_SIDECAR_FORMAT = 'pathotype-onnx/1';
/** How far ONNX Runtime's probabilities may be from the addon's for an export to pass its check. */
export const ONNX_TOLERANCE = 1e-4;

export interface OnnxSidecar {
  format: typeof ONNX_SIDECAR_FORMAT;
  model: { name: string; version: number; createdAt: string; software: string };
  onnx: { file: string; sha256: string; opset: number };
  classes: string[];
  input: {
    name: 'pixels';
    layout: OnnxInputLayout;
    /** uint8-nhwc: [batch, height, width, 3] bytes; float-nchw: [batch, 3, height, width] values 0-255. */
    shape: (number | string)[];
    channels: 'rgb';
    /** In the graph already: the channel order and (x - mean) / std of the network's input. */
    inGraph: { channelOrder: string; mean: number[]; std: number[] };
  };
  outputs: { logits: string; probabilities: string; attention?: string };
  /**
   * A multiple-instance package: the graph scores each patch as a bag of one; an image's (or a
   * slide's) logits are its patches' logits weighted by the softmax of their attention scores.
   */
  pooling?: { method: BagPooling; rule: string };
  /** Patches: side and step in pixels at `mpp` microns per pixel (null: each image as it is). */
  patch: { size: number; stride: number; mpp: number | null; targetScale: number | null };
  /** Applied to each image before it is cut, as pathotype does (not in the graph). */
  preprocess: ModelManifest['preprocess'];
  vote: ModelManifest['vote'];
  calibration: ModelManifest['calibration'] | null;
  metrics: ModelManifest['metrics'];
  /** Everything between an image file and the answer that the graph does not hold (model/reproduction.ts). */
  reproduce: Record<string, unknown>;
}

export interface OnnxCheck {
  patches: number;
  maxProbabilityDifference: number;
  maxLogitDifference: number;
  /** A multiple-instance package: its patches' attention scores. */
  maxAttentionDifference?: number;
}

export interface OnnxExportResult {
  file: string;
  sidecar: string;
  bytes: number;
  check: OnnxCheck;
}

/**
 * Writes `out` (the graph) and `out` without .onnx plus .json (the sidecar), each whole before it
 * is renamed into place, after checking the graph in ONNX Runtime on `patches` (uint8 NHWC at the
 * network's input size; seeded noise when absent).
 */
export async function exportPackageOnnx(
  modelDir: string,
  out: string,
  options: { opset?: number; input?: OnnxInputLayout; patches?: Uint8Array } = {},
): Promise<OnnxExportResult> {
  const { manifest, network, milHead } = await loadPackageNetwork(modelDir);
  if (manifest.encoder)
    throw new PathotypeError(
      'ERR_ONNX',
      `${modelDir} runs on an ONNX encoder (${manifest.encoder.file}) with a ${manifest.mil ? 'multiple-instance' : 'linear'} head: use the encoder itself; exporting both as one graph is not built`,
    );
  const opset = options.opset ?? ONNX_OPSETS.default;
  const layout = options.input ?? 'uint8-nhwc';
  const { spec, tensors } = milHead
    ? perPatchExport(
        manifest.spec,
        await network.exportTensors(),
        milHead.spec,
        await milHead.exportTensors(),
      )
    : { spec: manifest.spec, tensors: await network.exportTensors() };
  const bytes = networkToOnnx(spec, tensors, {
    opset,
    input: layout,
    probabilities: true,
    producerVersion: softwareVersion(),
    metadata: {
      pathotype_model: `${manifest.name}@${manifest.version}`,
      classes: manifest.classes.join(','),
    },
  });
  const patches = options.patches ?? noisePatches(manifest, 16);
  const check = await checkOnnx(
    network,
    bytes,
    layout,
    patches,
    milHead ? await perPatchOutputs(milRunner(addonRunner(network), milHead), patches) : undefined,
  );
  const sidecar = sidecarOf(manifest, path.basename(out), bytes, opset, layout);
  const sidecarFile = sidecarPath(out);
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await writeWhole(out, bytes);
  await writeWhole(sidecarFile, `${JSON.stringify(sidecar, null, 2)}\n`);
  return { file: out, sidecar: sidecarFile, bytes: bytes.length, check };
}

/**
 * The package's frozen base alone (its classifier dropped) as an ONNX encoder: the graph's output
 * `features` is [batch, features]; the sidecar is the `train.encoder` entry a recipe gives it.
 * Checked against the addon's features to ONNX_TOLERANCE of their scale before it is written.
 */
export async function exportFeaturesOnnx(
  modelDir: string,
  out: string,
  options: { opset?: number; patches?: Uint8Array } = {},
): Promise<{ file: string; sidecar: string; dims: number; maxRelativeDifference: number }> {
  const { manifest, network: whole } = await loadPackageNetwork(modelDir);
  if (manifest.encoder)
    throw new PathotypeError(
      'ERR_ONNX',
      `${modelDir} runs on an ONNX encoder already: use its ${manifest.encoder.file}`,
    );
  // A multiple-instance package's network is its feature base already.
  const network = await Network.create(manifest.mil ? manifest.spec : featureSpec(manifest.spec));
  await network.importTensors(await whole.exportTensors(), { strict: false });
  const bytes = networkToOnnx(network.spec, await network.exportTensors(), {
    opset: options.opset ?? ONNX_OPSETS.default,
    output: 'features',
    producerVersion: softwareVersion(),
    metadata: { pathotype_model: `${manifest.name}@${manifest.version}`, part: 'features' },
  });
  const patches = options.patches ?? noisePatches(manifest, 16);
  const expected = await network.predict(patches, { raw: true });
  const got = (await onnxOutputs(network, bytes, 'uint8-nhwc', patches)).get('features')?.data;
  const scale = expected.reduce((most, v) => Math.max(most, Math.abs(v)), 1e-6);
  const maxRelativeDifference = maxDifference(got, expected) / scale;
  if (!(maxRelativeDifference <= ONNX_TOLERANCE))
    throw new PathotypeError(
      'ERR_ONNX',
      `ONNX Runtime's features differ from the addon's by ${maxRelativeDifference.toExponential(2)} of their scale: the graph was not written`,
    );
  const mpp = mppOf(manifest.preprocess);
  const encoder = {
    // Beside the sidecar: a recipe that uses it gives the path where it put both.
    onnx: path.basename(out),
    inputSize: network.spec.input.height,
    mpp,
    mean: [0, 0, 0],
    std: [1, 1, 1],
    output: 'features',
  };
  const sidecarFile = sidecarPath(out);
  await mkdir(path.dirname(path.resolve(out)), { recursive: true });
  await writeWhole(out, bytes);
  await writeWhole(
    sidecarFile,
    `${JSON.stringify({ format: ONNX_SIDECAR_FORMAT, part: 'features', sha256: createHash('sha256').update(bytes).digest('hex'), dims: network.spec.outputShape[0] ?? 0, encoder }, null, 2)}\n`,
  );
  return { file: out, sidecar: sidecarFile, dims: network.spec.outputShape[0] ?? 0, maxRelativeDifference };
}

export function sidecarPath(onnxFile: string): string {
  return `${onnxFile.replace(/\.onnx$/i, '')}.json`;
}

async function writeWhole(file: string, data: Uint8Array | string): Promise<void> {
  await writeFile(`${file}.partial`, data);
  await rename(`${file}.partial`, file);
}

function sidecarOf(
  manifest: ModelManifest,
  file: string,
  bytes: Uint8Array,
  opset: number,
  layout: OnnxInputLayout,
): OnnxSidecar {
  const { height, width, channels, channelOrder, mean, std } = manifest.spec.input;
  const { targetScale, tiles } = manifest.preprocess;
  return {
    format: ONNX_SIDECAR_FORMAT,
    model: {
      name: manifest.name,
      version: manifest.version,
      createdAt: manifest.createdAt,
      software: manifest.software.pathotype,
    },
    onnx: { file, sha256: createHash('sha256').update(bytes).digest('hex'), opset },
    classes: manifest.classes,
    input: {
      name: 'pixels',
      layout,
      shape:
        layout === 'uint8-nhwc' ? ['batch', height, width, channels] : ['batch', channels, height, width],
      channels: 'rgb',
      inGraph: { channelOrder, mean: [...mean], std: [...std] },
    },
    outputs: {
      logits: 'logits',
      probabilities: 'probabilities',
      ...(hasAttention(manifest) ? { attention: 'attention' } : {}),
    },
    ...(manifest.mil
      ? {
          pooling: { method: manifest.mil.pooling, rule: BAG_POOLING[manifest.mil.pooling].sidecar },
        }
      : {}),
    patch: {
      size: tiles.patchSize,
      stride: tiles.stride,
      mpp: mppOf(manifest.preprocess),
      targetScale,
    },
    preprocess: manifest.preprocess,
    vote: manifest.vote,
    calibration: manifest.calibration ?? null,
    metrics: manifest.metrics,
    reproduce: reproductionOf(manifest.preprocess, manifest.vote, manifest.calibration),
  };
}

/** Seeded noise patches at the network's input size, when no real ones are given. */
function noisePatches(manifest: ModelManifest, count: number): Uint8Array {
  const { height, width, channels } = manifest.spec.input;
  const random = seededRandom(1);
  return Uint8Array.from({ length: count * height * width * channels }, () => Math.floor(random() * 256));
}

/** What the addon says of each patch: the graph's outputs to check (attention for a multiple-instance package). */
interface PatchExpectation {
  logits: Float32Array;
  probabilities: Float32Array;
  attention?: Float32Array;
}

/** A multiple-instance package's outputs per patch, run through base and head in the addon. */
async function perPatchOutputs(
  runner: ReturnType<typeof milRunner>,
  patches: Uint8Array,
): Promise<PatchExpectation> {
  const { logits, attention } = await runner.instances(patches);
  return { logits, probabilities: await runner.predict(patches), ...(attention ? { attention } : {}) };
}

/**
 * ONNX Runtime against the addon on the same patches (the network's own outputs, or `expected`);
 * throws ERR_ONNX beyond the tolerance.
 */
export async function checkOnnx(
  network: Network,
  bytes: Uint8Array,
  layout: OnnxInputLayout,
  patches: Uint8Array,
  expected?: PatchExpectation,
): Promise<OnnxCheck> {
  const { logits, probabilities, attention } = expected ?? {
    logits: await network.predict(patches, { raw: true }),
    probabilities: await network.predict(patches),
  };
  const out = await onnxOutputs(network, bytes, layout, patches);
  const check = {
    patches: patches.length / network.imageBytes,
    maxProbabilityDifference: maxDifference(out.get('probabilities')?.data, probabilities),
    maxLogitDifference: maxDifference(out.get('logits')?.data, logits),
    ...(attention ? { maxAttentionDifference: maxDifference(out.get('attention')?.data, attention) } : {}),
  };
  if (check.maxAttentionDifference !== undefined && !(check.maxAttentionDifference <= ONNX_TOLERANCE))
    throw new PathotypeError(
      'ERR_ONNX',
      `ONNX Runtime's attention scores differ from the addon's by ${check.maxAttentionDifference.toExponential(2)} (at most ${ONNX_TOLERANCE} is accepted): the graph was not written`,
    );
  if (!(check.maxProbabilityDifference <= ONNX_TOLERANCE))
    throw new PathotypeError(
      'ERR_ONNX',
      `ONNX Runtime's probabilities differ from the addon's by ${check.maxProbabilityDifference.toExponential(2)} (at most ${ONNX_TOLERANCE} is accepted): the graph was not written`,
    );
  return check;
}

/** Every output of a graph over `network`'s input, run by ONNX Runtime on uint8 NHWC patches fed in `layout`. */
async function onnxOutputs(
  network: Network,
  bytes: Uint8Array,
  layout: OnnxInputLayout,
  patches: Uint8Array,
): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
  const { height, width, channels } = network.spec.input;
  const shape = [patches.length / network.imageBytes, height, width, channels] as const;
  const session = await OnnxSession.open(bytes);
  try {
    return layout === 'uint8-nhwc'
      ? await session.run(patches, shape)
      : await session.run(nhwcToNchwFloat(patches, shape), [shape[0], channels, height, width]);
  } finally {
    await session.close();
  }
}

function maxDifference(a: Float32Array | undefined, b: Float32Array): number {
  if (!a || a.length !== b.length) return Infinity;
  let most = 0;
  for (let i = 0; i < a.length; i++) most = Math.max(most, Math.abs((a[i] ?? 0) - (b[i] ?? 0)));
  return most;
}
