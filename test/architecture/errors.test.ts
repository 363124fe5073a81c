/** The error catalogue is the one list of codes: the README's table and the native addon agree with it. */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { ERROR_CODES } from '../../src/errors.js';
import { repoRoot } from '../helpers.js';

describe('error catalogue', () => {
  it("the README's table lists every code with its status and meaning", () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const rows = [...readme.matchAll(/^\| `(ERR_[A-Z_]+)` \| (\d+) \| (.+) \|$/gm)].map((m) => [
      m[1],
      Number(m[2]),
      m[3],
    ]);
    const expected = Object.entries(ERROR_CODES).map(([code, e]) => [code, e.status, e.meaning]);
    assert.deepEqual(rows, expected);
  });

  it('every code the native addon raises is in the catalogue', () => {
    const dir = path.join(repoRoot, 'native/src');
    const native = new Set(
      readdirSync(dir).flatMap((f) =>
        [...readFileSync(path.join(dir, f), 'utf8').matchAll(/"(ERR_[A-Z_]+)"/g)].map((m) => m[1]),
      ),
    );
    assert.ok(native.size > 0);
    for (const code of native) assert.ok(code && code in ERROR_CODES, `${code} is not in src/errors.ts`);
  });
});
