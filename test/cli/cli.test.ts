import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import Database from 'better-sqlite3';

import { openStore } from '../../src/store/open.js';
import { tempDir } from '../fixtures.js';
import { runCli, type CliResult } from '../helpers.js';

async function pathotype(...args: string[]): Promise<CliResult> {
  return runCli(args);
}

describe('pathotype CLI', () => {
  it('prints help for the program and each subcommand', async () => {
    const top = await pathotype('--help');
    assert.equal(top.code, 0);
    assert.match(top.stdout, /Usage: pathotype/);
    for (const command of [
      ['engine', 'info'],
      ['engine', 'summary'],
      ['bench', 'engine'],
    ]) {
      const help = await pathotype(...command, '--help');
      assert.equal(help.code, 0, command.join(' '));
      assert.match(help.stdout, new RegExp(`Usage: pathotype ${command.join(' ')}`));
    }
  });

  it('reports the engine', async () => {
    const { stdout, code } = await pathotype('engine', 'info', '--json');
    assert.equal(code, 0);
    const info = JSON.parse(stdout) as { torchVersion: string; mkldnn: boolean; threads: number };
    assert.match(info.torchVersion, /^\d+\.\d+/);
    assert.equal(typeof info.mkldnn, 'boolean');
    assert.ok(info.threads >= 1);
  });

  it('summarises a zoo network', async () => {
    const { stdout, code } = await pathotype('engine', 'summary', 'vgg16', '--size', '32');
    assert.equal(code, 0);
    assert.match(stdout, /block5_conv3\.weight\s+\[512, 512, 3, 3\]/);
    assert.match(stdout, /vgg16: 14,716,227 parameters/);
  });

  it('fails with a clear message and a non-zero code on bad arguments', async () => {
    const unknown = await pathotype('engine', 'summary', 'resnet101');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown architecture 'resnet101'/);
    const bad = await pathotype('bench', 'engine', '--batch', 'many');
    assert.notEqual(bad.code, 0);
    assert.match(bad.stderr, /expected a positive integer/);
    const nothing = await pathotype('frobnicate');
    assert.notEqual(nothing.code, 0);
    assert.match(nothing.stderr, /unknown command/);
  });

  it('runs the engine benchmark and reports figures and ratios', async () => {
    const { stdout, code, stderr } = await pathotype(
      'bench',
      'engine',
      '--json',
      '--batch',
      '2',
      '--size',
      '32',
      '--train-steps',
      '1',
      '--predict-steps',
      '1',
      '--warmup',
      '0',
      '--no-bf16',
    );
    assert.equal(code, 0, stderr);
    const report = JSON.parse(stdout) as {
      rows: {
        engine: string;
        result?: { trainPerSecond: number; predictPerSecond: number };
        note?: string;
      }[];
      ratios: { name: string; train?: number }[];
    };
    const addon = report.rows.find((r) => r.engine === 'addon');
    assert.ok(addon?.result && addon.result.trainPerSecond > 0 && addon.result.predictPerSecond > 0);
    const cxx = report.rows.find((r) => r.engine === 'cxx');
    assert.ok(cxx?.result && cxx.result.trainPerSecond > 0, 'the plain C++ baseline ran');
    assert.ok(report.ratios.some((r) => r.name === 'addon/C++ fp32' && (r.train ?? 0) > 0));
    const python = report.rows.find((r) => r.engine === 'pytorch');
    assert.ok(python?.result ?? python?.note, 'PyTorch either ran or says why not');
  });
});

describe('pathotype users, keys and audit', () => {
  it('adds users with a password from stdin (never a flag), makes keys, reads the audit, refuses an open public server', async () => {
    const ws = tempDir();
    const added = await runCli(
      ['-w', ws, 'users', 'add', 'ada', '--role', 'admin'],
      60_000,
      'correct horse battery\n',
    );
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /added ada \(admin\)/);
    assert.doesNotMatch(added.stdout + added.stderr, /correct horse battery/, 'the password is never echoed');
    const short = await runCli(['-w', ws, 'users', 'add', 'bob', '--role', 'viewer'], 60_000, 'short\n');
    assert.notEqual(short.code, 0);
    assert.match(short.stderr, /10-256 characters/);
    const bad = await runCli(
      ['-w', ws, 'users', 'add', 'eve', '--role', 'root'],
      60_000,
      'correct horse battery\n',
    );
    assert.notEqual(bad.code, 0);
    const list = await runCli(['-w', ws, 'users', 'list', '--json']);
    const users = JSON.parse(list.stdout) as { name: string; role: string }[];
    assert.deepEqual(
      users.map((u) => `${u.name}:${u.role}`),
      ['ada:admin'],
    );
    assert.doesNotMatch(list.stdout, /argon2/, 'no hash in the listing');
    const key = await runCli([
      '-w',
      ws,
      'keys',
      'create',
      '--name',
      'script',
      '--user',
      'ada',
      '--role',
      'viewer',
      '--expires-days',
      '7',
    ]);
    assert.equal(key.code, 0, key.stderr);
    assert.match(key.stdout, /^pt_/);
    assert.match(key.stderr, /role viewer for ada, expires/);
    const keys = await runCli(['-w', ws, 'keys', 'list']);
    assert.match(keys.stdout, /script {2}viewer {2}active/);
    const audit = await runCli(['-w', ws, 'audit', '--format', 'csv']);
    assert.equal(audit.code, 0, audit.stderr);
    assert.match(audit.stdout, /^at,actor,actor_kind,action,case_id/);
    assert.notEqual((await runCli(['-w', ws, 'audit', '--since', 'yesterday'])).code, 0);
    const unlocked = await runCli(['-w', ws, 'users', 'unlock', 'ada']);
    assert.equal(unlocked.code, 0, unlocked.stderr);
    assert.match(unlocked.stdout, /lifted the sign-in lock on ada/);
    // The audit's chain: intact, then a row edited behind the dropped triggers is named.
    const store = await openStore(path.join(ws, 'serve'));
    for (const status of [200, 403, 200])
      await store.audit.append({
        actor: 'ada',
        actorKind: 'user',
        action: 'prediction.read',
        caseId: 'case-1',
        target: 'GET /cases/case-1',
        status,
        address: '127.0.0.1',
        userAgent: 'test',
      });
    await store.close();
    const verified = await runCli(['-w', ws, 'audit', '--verify']);
    assert.equal(verified.code, 0, verified.stderr);
    const head = /head, to keep elsewhere and check with --anchor: (\d+:[0-9a-f]{64})/.exec(
      verified.stdout,
    )?.[1];
    assert.ok(head, verified.stdout);
    const file = new Database(path.join(ws, 'serve', 'serve.sqlite'));
    file.exec('DROP TRIGGER audit_no_update; UPDATE audit SET status = 200 WHERE chain_seq = 2');
    file.close();
    const tampered = await runCli(['-w', ws, 'audit', '--verify', '--anchor', head]);
    assert.notEqual(tampered.code, 0);
    assert.match(tampered.stderr, /ERR_AUDIT_BROKEN/);
    assert.match(tampered.stderr, /changed: row 2 /);
    const disabled = await runCli(['-w', ws, 'users', 'disable', 'ada']);
    assert.match(disabled.stdout, /disabled ada/);
    // A fresh workspace has no user: serving it beyond loopback is refused.
    const open = await runCli(['-w', tempDir(), 'serve', '--model', 'nowhere', '--host', '0.0.0.0'], 60_000);
    assert.notEqual(open.code, 0);
    assert.match(open.stderr, /refusing to serve patient data on 0\.0\.0\.0/);
  });
});
