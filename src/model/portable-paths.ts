/**
 * A package names files relative to itself, never by an absolute path of the machine that made
 * it: a package is copied between machines, its manifest is served (`/api/v1/models`) and its
 * figures exported with the ONNX sidecar. The training record keeps where its pretrained weights,
 * encoder and cross-validation report were, relative to the package directory.
 */
import path from 'node:path';

/** `value` with every absolute path in it (any depth) made relative to `dir`. */
function relativePaths<T>(value: T, dir: string): T {
  if (typeof value === 'string')
    return (isAbsolutePath(value) ? path.relative(dir, value) || '.' : value) as T;
  if (Array.isArray(value)) return value.map((v: unknown) => relativePaths(v, dir)) as T;
  if (value !== null && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value as Record<string, unknown>).map(([k, v]) => [k, relativePaths(v, dir)]),
    ) as T;
  return value;
}

/** A POSIX or Windows absolute path: a string of one line, no scheme, starting at a root. */
function isAbsolutePath(value: string): boolean {
  return !/[\n:]/.test(value.slice(2)) && (path.posix.isAbsolute(value) || path.win32.isAbsolute(value));
}

/** The parts of a manifest that record files: the training configuration, the metrics, the slides learnt from. */
export function portableManifest<M extends { training: unknown; metrics: unknown; slides?: unknown }>(
  manifest: M,
  dir: string,
): M {
  const at = path.resolve(dir);
  return {
    ...manifest,
    training: relativePaths(manifest.training, at),
    metrics: relativePaths(manifest.metrics, at),
    ...(manifest.slides === undefined ? {} : { slides: relativePaths(manifest.slides, at) }),
  };
}
