/**
 * The README's command table and `--help` agree: every command and flag the table names exists,
 * every command exists in the table, and a row that does not end its flags with "[...]" names
 * every flag its command has.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import type { Command } from 'commander';

import { buildProgram } from '../../src/cli/program.js';
import { repoRoot } from '../helpers.js';

/** Flags every command has or that the README states once for all (-w/--workspace). */
const EVERYWHERE = new Set(['--help', '--workspace', '--version']);

interface Row {
  cell: string;
  commands: Command[];
  flags: string[];
  /** "[...]": the row names some of its command's flags, --help the rest. */
  partial: boolean;
}

function subcommand(parent: Command, name: string): Command | undefined {
  return parent.commands.find((c) => c.name() === name || c.aliases().includes(name));
}

function flagsOf(command: Command): string[] {
  return command.options.map((o) => o.long ?? o.short ?? '').filter((f) => !EVERYWHERE.has(f));
}

/** A cell's commands, split at `\|` outside the [optional] parts (which may hold `--a \| --b`). */
function alternatives(cell: string): string[] {
  return cell
    .replace(/^pathotype\s+/, '')
    .replace(/\[[^\]]*\]/g, '')
    .split(/\s\\\|\s/);
}

/** The commands of a row's cell: `pathotype users add NAME ... \| list \| disable NAME`. */
function parseRow(program: Command, cell: string): Row {
  const commands: Command[] = [];
  // An alternative after `\|` is a sibling of the command before it: `users add ... \| list`.
  let parent = program;
  for (const alternative of alternatives(cell)) {
    let at = parent;
    let found: Command | null = null;
    for (const word of alternative.trim().split(/\s+/)) {
      const next = subcommand(at, word);
      if (!next) break;
      if (next.commands.length > 0) parent = next;
      at = next;
      found = next;
    }
    if (found) commands.push(found);
  }
  const flags = [...cell.matchAll(/--[a-z0-9][a-z0-9-]*/g)].map((m) => m[0]);
  return { cell, commands, flags, partial: /\[\.\.\.\]/.test(cell) };
}

function readmeRows(program: Command): Row[] {
  const readme = readFileSync(path.join(repoRoot, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('\n## Commands'), readme.indexOf('\n## Layout'));
  return [...section.matchAll(/^\| `(pathotype [^`]+)` \|/gm)].map((m) => parseRow(program, m[1] ?? ''));
}

/** Every runnable command: those with no subcommands of their own (commander's help aside). */
function leaves(command: Command, trail: string[] = []): { name: string; command: Command }[] {
  const children = command.commands.filter((c) => c.name() !== 'help');
  if (children.length === 0) return [{ name: trail.join(' '), command }];
  return children.flatMap((c) => leaves(c, [...trail, c.name()]));
}

describe("the README's command table and --help", () => {
  const program = buildProgram();
  const rows = readmeRows(program);

  it('names only commands and flags that exist', () => {
    assert.ok(rows.length > 10, 'the table was found');
    for (const row of rows) {
      assert.ok(row.commands.length > 0, `no command of --help in: ${row.cell}`);
      const known = new Set(row.commands.flatMap(flagsOf).concat([...EVERYWHERE]));
      for (const flag of row.flags) assert.ok(known.has(flag), `${flag} is not a flag of: ${row.cell}`);
      assert.ok(
        alternatives(row.cell).length <= row.commands.length,
        `an alternative names no command: ${row.cell}`,
      );
    }
  });

  it('has a row for every command, and every flag of rows that claim to list them all', () => {
    const inTable = new Set(rows.flatMap((r) => r.commands));
    const missing = leaves(program)
      .filter((l) => !inTable.has(l.command))
      .map((l) => l.name);
    assert.deepEqual(missing, [], 'commands of --help missing from the README table');
    const unnamed = rows
      .filter((r) => !r.partial)
      .flatMap((r) =>
        r.commands.flatMap((c) =>
          flagsOf(c)
            .filter((f) => !r.flags.includes(f))
            .map((f) => `${c.name()} ${f}`),
        ),
      );
    assert.deepEqual(unnamed, [], 'flags of --help missing from rows without [...]');
  });
});
