/**
 * `pathotype users`, `pathotype keys` and `pathotype audit`: who may use a server, and who did
 * what. Each works on the server's own database (the workspace's SQLite, or --database).
 * Passwords are read from a prompt or from standard input, never from a flag (flags end up in
 * shell histories and process lists).
 */
import { createInterface } from 'node:readline';
import { Writable } from 'node:stream';

import type { Command } from 'commander';

import { ConfigError, PathotypeError } from '../errors.js';
import type { AuditEntry } from '../store/audit.js';
import { openStore, type ServerStore } from '../store/open.js';
import { narrower, ROLES, type Role } from '../store/users.js';
import { choice, positiveInt } from './options.js';

const DATABASE_HELP = 'the PostgreSQL database of a shared deployment (default: the workspace SQLite)';

/** A password typed at a prompt that echoes nothing, or the first line of piped input. */
async function readPassword(prompt: string): Promise<string> {
  if (!process.stdin.isTTY) {
    let text = '';
    for await (const chunk of process.stdin) text += (chunk as Buffer).toString();
    const line = text.split(/\r?\n/)[0] ?? '';
    if (!line) throw new ConfigError('no password on standard input');
    return line;
  }
  process.stderr.write(prompt);
  const silent = new Writable({ write: (_chunk, _encoding, done) => done() });
  const rl = createInterface({ input: process.stdin, output: silent, terminal: true });
  const password = await new Promise<string>((resolve) => rl.question('', resolve));
  rl.close();
  process.stderr.write('\n');
  return password;
}

export function registerAccess(program: Command, dataDirOf: (command: Command) => string): void {
  const withStore = async <T>(command: Command, fn: (store: ServerStore) => Promise<T>): Promise<T> => {
    const { database } = command.optsWithGlobals<{ database?: string }>();
    const store = await openStore(dataDirOf(command), database);
    try {
      return await fn(store);
    } finally {
      await store.close();
    }
  };
  registerUsers(program, withStore);
  registerKeys(program, withStore);
  registerAudit(program, withStore);
}

type WithStore = <T>(command: Command, fn: (store: ServerStore) => Promise<T>) => Promise<T>;

function registerUsers(program: Command, withStore: WithStore): void {
  const users = program
    .command('users')
    .description('accounts of the portal and the API: viewer, pathologist or admin')
    .option('--database <url>', DATABASE_HELP);
  users
    .command('add <name>')
    .description('add a user; the password is asked for (or read from standard input)')
    .requiredOption('--role <role>', ROLES.join(', '), choice(ROLES))
    .action(async (name: string, flags: { role: Role }, command: Command) => {
      const password = await readPassword(`password for ${name}: `);
      await withStore(command, async (store) => {
        const user = await store.users.add(name, flags.role, password);
        process.stdout.write(`added ${user.name} (${user.role}); the server now requires sign-in\n`);
      });
    });
  users
    .command('list')
    .description('users with their role and state')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        const list = await Promise.all(
          (await store.users.list()).map(async (u) => ({
            ...u,
            recentFailedSignIns: await store.users.recentFailures(u),
          })),
        );
        if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else
          for (const u of list)
            process.stdout.write(
              `${u.name}  ${u.role}  ${u.disabledAt ? `disabled ${u.disabledAt}` : 'active'}${u.recentFailedSignIns ? `  ${u.recentFailedSignIns} failed sign-ins lately` : ''}\n`,
            );
      });
    });
  users
    .command('disable <name>')
    .description('disable a user: their sessions and keys stop working at once; the audit keeps their name')
    .action(async (name: string, _flags: unknown, command: Command) => {
      await withStore(command, async (store) => {
        const user = await store.users.disable(name);
        process.stdout.write(`disabled ${user.name}\n`);
      });
    });
  users
    .command('unlock <name>')
    .description("lift the back-off and delay that failed sign-ins put on a user's name, from every address")
    .action(async (name: string, _flags: unknown, command: Command) => {
      await withStore(command, async (store) => {
        const user = await store.users.unlock(name);
        process.stdout.write(`lifted the sign-in lock on ${user.name}\n`);
      });
    });
  users
    .command('reset-password <name>')
    .description('set a new password (asked for, or from standard input); ends their sessions, lifts a lock')
    .action(async (name: string, _flags: unknown, command: Command) => {
      const password = await readPassword(`new password for ${name}: `);
      await withStore(command, async (store) => {
        const user = await store.users.resetPassword(name, password);
        process.stdout.write(`reset the password of ${user.name}\n`);
      });
    });
}

function registerKeys(program: Command, withStore: WithStore): void {
  const keys = program
    .command('keys')
    .description("API keys for the REST API: a user's (their role or narrower) or a service key with a role")
    .option('--database <url>', DATABASE_HELP);
  keys
    .command('create')
    .description('create a key; it is shown once and stored only as a hash')
    .requiredOption('--name <name>', 'who or what uses it')
    .option('--user <name>', 'the user it acts for (it carries their role, or --role if narrower)')
    .option('--role <role>', `${ROLES.join(', ')} (default: the user's role, or pathologist)`, choice(ROLES))
    .option('--expires-days <n>', 'the key stops working after this many days', positiveInt)
    .action(
      async (flags: { name: string; user?: string; role?: Role; expiresDays?: number }, command: Command) => {
        await withStore(command, async (store) => {
          const user = flags.user ? await store.users.find(flags.user) : undefined;
          if (flags.user && (!user || user.disabledAt))
            throw new PathotypeError('ERR_NOT_FOUND', `no active user '${flags.user}'`);
          const role: Role = user
            ? narrower(user.role, flags.role ?? user.role)
            : (flags.role ?? 'pathologist');
          const { key, record } = await store.keys.create({
            name: flags.name,
            userId: user?.id ?? null,
            role,
            expiresAt: flags.expiresDays
              ? new Date(Date.now() + flags.expiresDays * 86_400_000).toISOString()
              : null,
          });
          process.stdout.write(`${key}\n`);
          process.stderr.write(
            `created key ${record.id} (${record.prefix}…) '${record.name}', role ${role}${user ? ` for ${user.name}` : ''}${record.expiresAt ? `, expires ${record.expiresAt}` : ''}; it is not shown again\n`,
          );
        });
      },
    );
  keys
    .command('list')
    .description('keys with their prefix, owner, role and state')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }, command: Command) => {
      await withStore(command, async (store) => {
        const list = await store.keys.list();
        if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else
          for (const k of list)
            process.stdout.write(
              `${k.id}  ${k.prefix}…  ${k.name}  ${k.role ?? 'pathologist'}  ${k.revokedAt ? `revoked ${k.revokedAt}` : k.expiresAt && Date.parse(k.expiresAt) <= Date.now() ? `expired ${k.expiresAt}` : 'active'}\n`,
            );
      });
    });
  keys
    .command('revoke <id>')
    .description('revoke a key by id or prefix (the server stays closed even with no key left)')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withStore(command, async (store) => {
        const key = await store.keys.revoke(id);
        if (!key) throw new PathotypeError('ERR_NOT_FOUND', `no key '${id}'`);
        process.stdout.write(`revoked ${key.id} (${key.name})\n`);
      });
    });
}

function csvOf(entries: readonly AuditEntry[]): string {
  const quote = (s: string): string => (/[",\n]/.test(s) ? `"${s.replaceAll('"', '""')}"` : s);
  const header = [
    'at',
    'actor',
    'actor_kind',
    'action',
    'case_id',
    'target',
    'status',
    'address',
    'user_agent',
  ];
  const rows = entries.map((e) =>
    [e.at, e.actor, e.actorKind, e.action, e.caseId ?? '', e.target, String(e.status), e.address, e.userAgent]
      .map(quote)
      .join(','),
  );
  return [header.join(','), ...rows].join('\n');
}

function registerAudit(program: Command, withStore: WithStore): void {
  program
    .command('audit')
    .description("who read or changed which patient's data, when and from where (newest first)")
    .option('--database <url>', DATABASE_HELP)
    .option('--user <name>', "one user's (or key's, by its listed name) accesses")
    .option('--case <id>', 'accesses to one prediction or slide job')
    .option('--since <time>', 'from this ISO time on (2026-12-01 or 2026-12-01T08:00)')
    .option('--limit <n>', 'at most this many entries', positiveInt, 1000)
    .option('--format <format>', 'text, csv or json', choice(['text', 'csv', 'json'] as const), 'text')
    .option(
      '--verify',
      "check the audit's hash chain: report the first row changed, removed or inserted, and the head to keep",
    )
    .option('--anchor <seq:hash>', 'with --verify: a head printed before, which the chain must still hold')
    .action(
      async (
        flags: {
          user?: string;
          case?: string;
          since?: string;
          limit: number;
          format: 'text' | 'csv' | 'json';
          verify?: boolean;
          anchor?: string;
        },
        command: Command,
      ) => {
        if (flags.verify) {
          await withStore(command, (store) => verifyAudit(store, flags.anchor, flags.format === 'json'));
          return;
        }
        if (flags.since && Number.isNaN(Date.parse(flags.since)))
          throw new ConfigError(`--since takes an ISO time (got '${flags.since}')`);
        await withStore(command, async (store) => {
          const entries = await store.audit.list({
            ...(flags.user ? { actor: flags.user } : {}),
            ...(flags.case ? { caseId: flags.case } : {}),
            ...(flags.since ? { since: new Date(flags.since).toISOString() } : {}),
            limit: flags.limit,
          });
          if (flags.format === 'json') process.stdout.write(`${JSON.stringify(entries, null, 2)}\n`);
          else if (flags.format === 'csv') process.stdout.write(`${csvOf(entries)}\n`);
          else
            for (const e of entries)
              process.stdout.write(
                `${e.at}  ${e.actor} (${e.actorKind})  ${e.action}  ${e.caseId ?? '-'}  ${e.status}  ${e.address}\n`,
              );
        });
      },
    );
}

/** `audit --verify`: the chain's state on standard output; a broken chain is ERR_AUDIT_BROKEN. */
async function verifyAudit(store: ServerStore, anchor: string | undefined, json: boolean): Promise<void> {
  const match = anchor === undefined ? null : /^(\d+):([0-9a-f]{64})$/.exec(anchor);
  if (anchor !== undefined && !match)
    throw new ConfigError(`--anchor takes SEQ:HASH as --verify printed it (got '${anchor.slice(0, 80)}')`);
  const result = await store.audit.verify(
    match ? { seq: Number(match[1]), hash: match[2] as string } : undefined,
  );
  if (json) process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  if (result.broken)
    throw new PathotypeError(
      'ERR_AUDIT_BROKEN',
      `the audit was tampered with: ${result.broken.kind}: ${result.broken.detail}`,
    );
  if (!json)
    process.stdout.write(
      `the audit's ${result.rows} rows are intact${result.unchained ? ` (${result.unchained} written before the chain began)` : ''}; ` +
        `its head, to keep elsewhere and check with --anchor: ${result.head ? `${result.head.seq}:${result.head.hash}` : 'none yet'}\n`,
    );
}
