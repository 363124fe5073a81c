/**
 * The layout is the architecture: each folder of src/ is a stage that imports only from the
 * stages below it, and no module imports itself back through others. The import lists come from
 * TypeScript's own pre-processor, so a re-export or a dynamic import counts like a plain import.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import ts from 'typescript';

import { repoRoot, sourceFiles } from '../helpers.js';

/** Bottom to top; the README's layout table lists the same order. */
export const LAYERS = [
  '.', // errors, random, config, html, workspace: what every stage shares
  'io',
  'image', // decoding, normalisation, tissue, tiling: one image's pixels
  'slide', // whole-slide reading and Deep Zoom
  'acquire', // fetch, import, patient grouping, catalog, splits
  'prepare', // the recipe, patch stores
  'engine',
  'model',
  'predict',
  'train',
  'evaluate',
  'store', // what a server keeps: predictions, keys, slide jobs; SQLite or PostgreSQL
  'serve',
  'pipeline',
  'bench',
  'cli',
] as const;

const srcDir = path.join(repoRoot, 'src');

function importsOf(file: string): string[] {
  const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((name) => name.startsWith('.'))
    .map((name) => path.resolve(path.dirname(file), name).replace(/\.js$/, '.ts'));
}

/** The stage of a file: its first folder under src/, or '.' for the shared modules at the top. */
function layerOf(file: string): number {
  const relative = path.relative(srcDir, file).split(path.sep);
  const stage = relative.length > 1 ? (relative[0] as string) : '.';
  const index = LAYERS.indexOf(stage as (typeof LAYERS)[number]);
  assert.notEqual(index, -1, `src/${stage} is not in the layer list: place it there`);
  return index;
}

const graph = new Map(sourceFiles(srcDir).map((f) => [f, importsOf(f)]));
const name = (f: string): string => path.relative(repoRoot, f);

describe('architecture', () => {
  it('every stage imports only from itself and the stages below it', () => {
    const upward: string[] = [];
    for (const [file, imports] of graph) {
      for (const target of imports) {
        if (layerOf(target) > layerOf(file)) upward.push(`${name(file)} -> ${name(target)}`);
      }
    }
    assert.deepEqual(upward, []);
  });

  it('no module depends on itself through others', () => {
    const state = new Map<string, 'open' | 'done'>();
    const cycles: string[] = [];
    const visit = (file: string, trail: string[]): void => {
      if (state.get(file) === 'done') return;
      if (state.get(file) === 'open') {
        cycles.push([...trail.slice(trail.indexOf(file)), file].map(name).join(' -> '));
        return;
      }
      state.set(file, 'open');
      for (const target of graph.get(file) ?? []) visit(target, [...trail, file]);
      state.set(file, 'done');
    };
    for (const file of graph.keys()) visit(file, []);
    assert.deepEqual(cycles, []);
  });
});
