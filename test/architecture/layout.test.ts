/**
 * The README's Layout is the map a newcomer reads first, so it must stay true: every file or
 * folder a row names exists where the row says, and test/ mirrors src/ folder for folder (a
 * stage's tests are found under the stage's own name).
 */
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { repoRoot } from '../helpers.js';

/** Test folders that hold no stage's tests: the architecture checks themselves. */
const TEST_ONLY_FOLDERS = new Set(['architecture']);

interface LayoutRow {
  /** The row's path cell, e.g. `src/engine` or `assets/portal/`. */
  place: string;
  /** Every back-quoted name in the row's description cell. */
  names: string[];
}

function layoutRows(): LayoutRow[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.split(/^## Layout$/m)[1]?.split(/^## /m)[0];
  assert.ok(section, 'README.md has a "## Layout" section');
  return section
    .split('\n')
    .filter((line) => /^\| `[^`]+` \|/.test(line))
    .map((line) => {
      const [, place = '', holds = ''] = line.split('|').map((cell) => cell.trim());
      return {
        place: place.replace(/`/g, ''),
        names: [...holds.matchAll(/`([^`]+)`/g)].map((m) => m[1] ?? ''),
      };
    });
}

/** A back-quoted name that looks like a file or folder (not a command or a config value). */
function isPathName(name: string): boolean {
  return /^[\w./-]+$/.test(name) && (/\.(ts|js|py|groovy|sh)$/.test(name) || name.endsWith('/'));
}

/** Where a row's name lives: beside the row's folder, or from the root when it says so. */
function resolveName(place: string, name: string): string[] {
  const folder = place === 'src/*.ts' ? 'src' : place.replace(/\/$/, '');
  return [path.join(repoRoot, folder, name), path.join(repoRoot, name)];
}

describe('layout', () => {
  it("every file and folder the README's Layout names exists", () => {
    const rows = layoutRows();
    assert.ok(rows.length > 10, 'the Layout table was found');
    const missing: string[] = [];
    for (const row of rows) {
      if (row.place !== 'src/*.ts' && !existsSync(path.join(repoRoot, row.place))) missing.push(row.place);
      for (const name of row.names.filter(isPathName))
        if (!resolveName(row.place, name).some((p) => existsSync(p))) missing.push(`${row.place}: ${name}`);
    }
    assert.deepEqual(missing, []);
  });

  it('every folder of src/ has a row in the Layout', () => {
    const places = new Set(layoutRows().map((r) => r.place.replace(/\/$/, '')));
    const folders = readdirSync(path.join(repoRoot, 'src'), { withFileTypes: true })
      .filter((e) => e.isDirectory())
      .map((e) => `src/${e.name}`);
    assert.deepEqual(
      folders.filter((f) => !places.has(f)),
      [],
    );
  });

  it('test/ mirrors src/: each test folder is named after a stage', () => {
    const stages = new Set(
      readdirSync(path.join(repoRoot, 'src'), { withFileTypes: true })
        .filter((e) => e.isDirectory())
        .map((e) => e.name),
    );
    const strays = readdirSync(path.join(repoRoot, 'test'), { withFileTypes: true })
      .filter((e) => e.isDirectory() && !TEST_ONLY_FOLDERS.has(e.name) && !stages.has(e.name))
      .map((e) => `test/${e.name}`);
    assert.deepEqual(strays, []);
  });
});
