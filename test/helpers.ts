/** Shared test helpers: paths to ../shared, small math on probabilities. */
import { execFile } from 'node:child_process';
import { existsSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const sharedDir = path.resolve(repoRoot, '../shared');
export const weightsDir = path.join(sharedDir, 'weights');
export const lymphomaDir = path.join(sharedDir, 'data/iicbu2008-lymphoma-0.3x');
export const fullresSampleDir = path.join(sharedDir, 'data/iicbu2008-lymphoma-fullres-sample');
export const halfresSampleDir = path.join(sharedDir, 'data/iicbu2008-lymphoma-halfres-sample');

/** A workspace root whose weights/ and downloads/ outlive one test run, so npm fetches once per machine. */
export function testWeightsRoot(): string {
  return path.join(os.tmpdir(), 'pathotype-test-weights');
}

/** The TypeScript files under `dir`, every level down. */
export function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(full);
    return e.name.endsWith('.ts') ? [full] : [];
  });
}

export function hasShared(dir: string): boolean {
  return existsSync(dir);
}

export function argmaxRows(probs: Float32Array, classes: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < probs.length / classes; i++) {
    let best = 0;
    for (let c = 1; c < classes; c++)
      if ((probs[i * classes + c] ?? 0) > (probs[i * classes + best] ?? 0)) best = c;
    out.push(best);
  }
  return out;
}

export function accuracy(predicted: readonly number[], labels: Int32Array): number {
  let correct = 0;
  predicted.forEach((p, i) => {
    if (p === labels[i]) correct++;
  });
  return correct / predicted.length;
}

export interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}

/** Runs bin/pathotype.js with the arguments, `input` on its stdin; never throws for a non-zero exit. */
export async function runCli(
  args: readonly string[],
  timeoutMs = 300_000,
  input?: string,
): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = execFile(
      process.execPath,
      [path.join(repoRoot, 'bin/pathotype.js'), ...args],
      { timeout: timeoutMs },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : 1) : 0;
        resolve({ stdout, stderr, code });
      },
    );
    child.stdin?.end(input ?? '');
  });
}

/** Every string in `value` (any depth) that is an absolute path of this machine: a package must hold none. */
export function absolutePathsIn(value: unknown): string[] {
  if (typeof value === 'string') return path.isAbsolute(value) ? [value] : [];
  if (Array.isArray(value)) return value.flatMap(absolutePathsIn);
  if (value !== null && typeof value === 'object') return Object.values(value).flatMap(absolutePathsIn);
  return [];
}
