/**
 * The workspace: one directory holding the SQLite catalog and everything derived from it
 * (downloads, extracted datasets, patch stores). Default ./workspace.
 */
import { mkdirSync } from 'node:fs';
import path from 'node:path';

export interface Workspace {
  root: string;
  catalogPath: string;
  downloadsDir: string;
  datasetsDir: string;
  patchesDir: string;
}

export const DEFAULT_WORKSPACE = 'workspace';

export function workspaceAt(dir: string = DEFAULT_WORKSPACE): Workspace {
  const root = path.resolve(dir);
  return {
    root,
    catalogPath: path.join(root, 'catalog.sqlite'),
    downloadsDir: path.join(root, 'downloads'),
    datasetsDir: path.join(root, 'datasets'),
    patchesDir: path.join(root, 'patches'),
  };
}

export function ensureDir(dir: string): string {
  mkdirSync(dir, { recursive: true });
  return dir;
}
