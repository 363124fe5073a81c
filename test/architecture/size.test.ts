/**
 * Functions and modules stay short enough to read at once: no function in src/ is longer than
 * 100 lines and no file longer than 500 (a test, so a long one cannot come back unnoticed).
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import ts from 'typescript';

import { repoRoot, sourceFiles } from '../helpers.js';

const MAX_LINES = 100;
const MAX_FILE_LINES = 500;

function longFunctions(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && 'body' in node && node.body) {
      const start = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const end = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      const name = node.name?.getText(source) ?? '(anonymous)';
      if (lines > MAX_LINES)
        found.push(`${path.relative(repoRoot, file)}:${start + 1} ${name}: ${lines} lines`);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** The file, with its line count, when it is longer than MAX_FILE_LINES. */
function longFile(file: string): string[] {
  const lines = readFileSync(file, 'utf8').split('\n').length - 1;
  return lines > MAX_FILE_LINES ? [`${path.relative(repoRoot, file)}: ${lines} lines`] : [];
}

describe('size', () => {
  it(`no function is longer than ${MAX_LINES} lines`, () => {
    assert.deepEqual(sourceFiles(path.join(repoRoot, 'src')).flatMap(longFunctions), []);
  });

  it(`no file is longer than ${MAX_FILE_LINES} lines`, () => {
    assert.deepEqual(sourceFiles(path.join(repoRoot, 'src')).flatMap(longFile), []);
  });
});
