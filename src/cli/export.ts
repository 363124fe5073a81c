/** `pathotype export`: a model package as an ONNX graph and its JSON sidecar, checked in ONNX Runtime. */
import path from 'node:path';

import type { Command } from 'commander';

import { ONNX_INPUTS, ONNX_OPSETS, type OnnxInputLayout } from '../engine/onnx-graph.js';
import { exportFeaturesOnnx, exportPackageOnnx } from '../model/onnx-package.js';
import { readManifest } from '../model/package.js';
import { Predictor } from '../predict/predictor.js';
import { resolveModelDir } from './context.js';
import { choice, positiveInt } from './options.js';

/** Patches the check runs at most: enough to cover each image's variety, quick on any CPU. */
const CHECK_PATCHES = 32;

interface ExportFlags {
  format: 'onnx';
  out?: string;
  opset: number;
  input: OnnxInputLayout;
  checkImages?: string[];
  features?: boolean;
}

export function registerExport(program: Command): void {
  program
    .command('export <model>')
    .description(
      'write a model package as an ONNX graph (base and head, input step in the graph) and a JSON sidecar ' +
        '(classes, patch size and microns per pixel, normaliser, vote rule, calibration); ONNX Runtime checks ' +
        'it against the addon first',
    )
    .option('--format <format>', 'onnx', choice(['onnx'] as const), 'onnx')
    .option(
      '--out <file>',
      'the graph file (default: NAME-vVERSION.onnx here); the sidecar is beside it as .json',
    )
    .option(
      '--opset <n>',
      `ONNX opset, ${ONNX_OPSETS.min} to ${ONNX_OPSETS.max}`,
      positiveInt,
      ONNX_OPSETS.default,
    )
    .option(
      '--input <layout>',
      'uint8-nhwc: [batch, height, width, 3] RGB bytes, as pathotype cuts patches; float-nchw: [batch, 3, height, width] RGB values 0-255',
      choice(ONNX_INPUTS),
      'uint8-nhwc',
    )
    .option(
      '--features',
      'the frozen base alone, without the classifier: an encoder for train.encoder (its output [batch, features])',
    )
    .option(
      '--check-images <images...>',
      `check on up to ${CHECK_PATCHES} real patches of these images, prepared as the model prepares them (default: seeded noise)`,
    )
    .action(async (reference: string, flags: ExportFlags, command: Command) => {
      const modelDir = resolveModelDir(command, reference);
      const manifest = readManifest(modelDir);
      const out = flags.out ?? path.resolve(`${manifest.name}-v${manifest.version}.onnx`);
      const patches = flags.checkImages ? await patchesOf(modelDir, flags.checkImages) : undefined;
      if (flags.features) {
        const encoder = await exportFeaturesOnnx(modelDir, out, {
          opset: flags.opset,
          ...(patches ? { patches } : {}),
        });
        process.stdout.write(
          `${encoder.file} (${encoder.dims} features a patch)\n${encoder.sidecar} (its train.encoder entry)\n` +
            `checked in ONNX Runtime: features within ${encoder.maxRelativeDifference.toExponential(2)} of their scale of the addon's\n`,
        );
        return;
      }
      const result = await exportPackageOnnx(modelDir, out, {
        opset: flags.opset,
        input: flags.input,
        ...(patches ? { patches } : {}),
      });
      process.stdout.write(
        `${result.file} (${(result.bytes / 1e6).toFixed(1)} MB, opset ${flags.opset}, input ${flags.input})\n` +
          `${result.sidecar}\n` +
          `checked in ONNX Runtime on ${result.check.patches} ${patches ? 'real' : 'noise'} patches: probabilities within ` +
          `${result.check.maxProbabilityDifference.toExponential(2)}, logits within ${result.check.maxLogitDifference.toExponential(2)}` +
          `${result.check.maxAttentionDifference === undefined ? '' : `, attention scores within ${result.check.maxAttentionDifference.toExponential(2)}`} of the addon's\n`,
      );
    });
}

/** Up to CHECK_PATCHES patches of the images, each prepared by the model's own predictor. */
async function patchesOf(modelDir: string, images: string[]): Promise<Uint8Array> {
  const predictor = await Predictor.load(modelDir);
  const { height, width, channels } = predictor.manifest.spec.input;
  const size = height * width * channels;
  const parts: Uint8Array[] = [];
  let count = 0;
  for (const [i, file] of images.entries()) {
    const { image } = await predictor.preprocess({ source: file, name: path.basename(file) });
    // An even share of the patches from each image, spread over it.
    const take = Math.min(image.count, Math.ceil((CHECK_PATCHES - count) / (images.length - i)));
    for (let k = 0; k < take; k++) {
      const at = Math.floor((k * image.count) / take);
      parts.push(image.patches.subarray(at * size, (at + 1) * size));
    }
    count += take;
  }
  const out = new Uint8Array(count * size);
  parts.forEach((p, i) => out.set(p, i * size));
  return out;
}
