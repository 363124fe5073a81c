/**
 * The input checks as one table: each row refuses what fails its limit with its own code and its
 * one message, a slide tile is judged by the tile limits, every measure is taken once, and the
 * README lists the table as it is.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { ERROR_CODES } from '../../src/errors.js';
import {
  assess,
  checkList,
  failedChecks,
  INPUT_CHECKS,
  inputCheck,
  refusal,
  TILE_CHECKS,
  type Assessment,
  type Check,
} from '../../src/image/input-checks.js';
import { JudgedPixels } from '../../src/image/judged-pixels.js';
import { heImage } from '../fixtures.js';
import { repoRoot } from '../helpers.js';

/** Every measure at its field limit: the limits themselves pass. */
const atLimits = (): Assessment =>
  Object.fromEntries(INPUT_CHECKS.map((c) => [c.name, c.field])) as Assessment;

/** A value past the check's limit for what is judged, by a tenth of it. */
const past = (check: Check, limit: number): number =>
  check.bound === 'min' ? limit * 0.9 : limit * 1.1 + 1e-6;

describe('input checks', () => {
  it('passes an image at every limit, and refuses one past a limit by that row alone, in its one message', () => {
    assert.deepEqual(failedChecks(atLimits(), 'field'), []);
    const messages = new Set<string>();
    for (const check of INPUT_CHECKS) {
      const assessment = { ...atLimits(), [check.name]: past(check, check.field) };
      assert.deepEqual(
        failedChecks(assessment, 'field').map((c) => c.name),
        [check.name],
      );
      const error = refusal(check, 'field.png', assessment[check.name], 'field');
      assert.equal(error.code, check.code);
      assert.ok(ERROR_CODES[check.code], `${check.code} is catalogued`);
      assert.equal(
        error.message,
        check.message('field.png', check.format(assessment[check.name]), check.format(check.field)),
      );
      assert.match(error.message, /^field\.png /);
      messages.add(error.message.replace(/[\d.]+%?/g, 'N'));
    }
    assert.equal(messages.size, INPUT_CHECKS.length, 'no two checks share a message');
  });

  it('judges a slide tile by the tile limits, and only by the checks that have one', () => {
    assert.deepEqual(
      TILE_CHECKS.map((c) => c.name),
      ['fold', 'focus'],
    );
    const focus = inputCheck('focus');
    assert.ok(focus.tile !== null && focus.tile < focus.field);
    // Sharp enough for a tile, not for a field.
    const between = (focus.field + focus.tile) / 2;
    const assessment = { ...atLimits(), focus: between };
    assert.deepEqual(
      failedChecks(assessment, 'field').map((c) => c.name),
      ['focus'],
    );
    assert.deepEqual(failedChecks(assessment, 'tile'), []);
    assert.deepEqual(
      failedChecks({ focus: past(focus, focus.tile) }, 'tile').map((c) => c.name),
      ['focus'],
    );
    // A tile is not judged by a check without a tile limit, however far past its field limit.
    const empty = { ...atLimits(), tissue: 0, stain: 0, ink: 1, blackInk: 1, bubble: 1, patches: 0 };
    assert.deepEqual(failedChecks(empty, 'tile'), []);
    assert.equal(failedChecks(empty, 'field').length, 6);
    // A tile is a fold or not (1 or 0 of it), against a tile limit of its own.
    const fold = inputCheck('fold');
    assert.deepEqual(
      failedChecks({ fold: 1 }, 'tile').map((c) => c.name),
      ['fold'],
    );
    assert.deepEqual(failedChecks({ fold: 0 }, 'tile'), []);
    assert.ok(fold.overSlide);
    assert.deepEqual(Array.from(fold.overSlide(Float32Array.from([1, 1, 1, 2]))), [0, 0, 0, 1]);
  });

  it('measures every check once, into one assessment', () => {
    const image = heImage(96, 72, 3);
    const assessment = assess(new JudgedPixels(image, image, 6));
    assert.deepEqual(
      Object.keys(assessment),
      INPUT_CHECKS.map((c) => c.name),
    );
    assert.ok(Object.values(assessment).every(Number.isFinite));
    assert.equal(assessment.patches, 6);
    assert.deepEqual(failedChecks(assessment, 'field'), [], JSON.stringify(assessment));
  });

  it("the README's table of checks is the table", () => {
    const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
    const rows = readme
      .split('\n')
      .filter((line) => /^\| `\w+` \| `ERR_\w+` \|/.test(line))
      .map((line) =>
        line
          .split('|')
          .slice(1, -1)
          .map((cell) => cell.trim()),
      );
    const limit = (check: Check, value: number | null): string =>
      value === null
        ? 'not judged'
        : `${check.bound === 'min' ? 'at least' : 'at most'} ${check.format(value)}`;
    assert.deepEqual(
      rows.map(([name, code, , field, tile]) => [name, code, field, tile]),
      INPUT_CHECKS.map((c) => [`\`${c.name}\``, `\`${c.code}\``, limit(c, c.field), limit(c, c.tile)]),
    );
    assert.equal(checkList().length, rows.length);
  });
});
