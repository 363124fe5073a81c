/** What every workspace command needs: the workspace from --workspace, an open catalog. */
import path from 'node:path';

import type { Command } from 'commander';

import { readConfigFile } from '../config.js';
import { Catalog } from '../acquire/catalog.js';
import { modelDirFor, workspaceAt, type Workspace } from '../workspace.js';
import { applyConfigFile } from './options.js';

export async function withCatalog<T>(
  command: Command,
  fn: (catalog: Catalog, workspace: Workspace) => Promise<T>,
): Promise<T> {
  const { workspace: dir } = command.optsWithGlobals<{ workspace: string }>();
  const workspace = workspaceAt(dir);
  const catalog = Catalog.open(workspace);
  try {
    return await fn(catalog, workspace);
  } finally {
    catalog.close();
  }
}

/** Reads --config, when given, into the command's options (command-line values win). */
export function loadCommandConfig(command: Command): void {
  const file = command.opts<{ config?: string }>().config;
  if (file) applyConfigFile(command, readConfigFile(file));
}

export function print(json: boolean | undefined, value: unknown, text: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(value, null, 2)}\n` : `${text()}\n`);
}

/** A model given as a path (anything with a '/') or as a model name in the workspace. */
export function resolveModelDir(command: Command, reference: string): string {
  if (reference.includes('/')) return path.resolve(reference);
  const { workspace } = command.optsWithGlobals<{ workspace: string }>();
  return modelDirFor(workspaceAt(workspace), reference);
}
