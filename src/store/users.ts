/**
 * Accounts: a name, a role, a password hashed with argon2id (@node-rs/argon2, OWASP's minimum
 * parameters: 19 MiB, two passes), disabled rather than deleted so the audit keeps naming them.
 * Repeated wrong passwords lock the account for a while.
 */
import { randomUUID } from 'node:crypto';

import { Algorithm, hash, verify } from '@node-rs/argon2';

import { ConfigError, PathotypeError } from '../errors.js';
import { USER_LIMITS } from '../limits.js';
import type { Database } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';
import { Settings } from './settings.js';

/** From least to most: each role may do what the ones before it may. */
export const ROLES = ['viewer', 'pathologist', 'admin'] as const;
export type Role = (typeof ROLES)[number];

export function isRole(value: unknown): value is Role {
  return typeof value === 'string' && (ROLES as readonly string[]).includes(value);
}

export function roleAllows(role: Role, needed: Role): boolean {
  return ROLES.indexOf(role) >= ROLES.indexOf(needed);
}

/** The lesser of two roles: a key scoped below its user's role. */
export function narrower(a: Role, b: Role): Role {
  return ROLES.indexOf(a) <= ROLES.indexOf(b) ? a : b;
}

const HASH_OPTIONS = {
  algorithm: Algorithm.Argon2id,
  memoryCost: 19_456,
  timeCost: 2,
  parallelism: 1,
} as const;

export interface UserRecord {
  id: string;
  name: string;
  role: Role;
  createdAt: string;
  passwordChangedAt: string;
  disabledAt: string | null;
  failedLogins: number;
  lockedUntil: string | null;
}

const COLUMNS: Columns<UserRecord> = {
  id: ['id', 'text'],
  name: ['name', 'text'],
  role: ['role', 'text'],
  createdAt: ['created_at', 'text'],
  passwordChangedAt: ['password_changed_at', 'text'],
  disabledAt: ['disabled_at', 'text'],
  failedLogins: ['failed_logins', 'number'],
  lockedUntil: ['locked_until', 'text'],
};
const SELECT = `SELECT ${columnNames(COLUMNS).join(', ')} FROM users`;

/** Letters, digits and . _ @ - in any script; no spaces or controls. */
const NAME_PATTERN = /^[\p{L}\p{N}._@-]+$/u;

/**
 * Scripts whose letters pass for Latin ones (Cyrillic 'а' for 'a', Greek 'ο' for 'o'): a name
 * mixing Latin with one of them is a look-alike of another name, not a name of its own.
 */
const CONFUSABLE_WITH_LATIN = [/\p{Script=Cyrillic}/u, /\p{Script=Greek}/u];
const LATIN = /\p{Script=Latin}/u;

/** The form names are compared in: compatibility-normalised (NFKC), then without case. */
export function nameKey(name: string): string {
  return name.normalize('NFKC').toLowerCase();
}

export function checkUserName(name: string): string {
  // NFKC: full-width 'ａｄｍｉｎ' and ligatures become the letters they stand for.
  const normal = name.normalize('NFKC');
  if (normal.length === 0 || normal.length > USER_LIMITS.nameLength || !NAME_PATTERN.test(normal))
    throw new ConfigError(
      `a user name is 1-${USER_LIMITS.nameLength} letters, digits, '.', '_', '@' or '-' (got ${JSON.stringify(name.slice(0, 80))})`,
    );
  if (LATIN.test(normal) && CONFUSABLE_WITH_LATIN.some((script) => script.test(normal)))
    throw new ConfigError(
      `the user name ${JSON.stringify(name.slice(0, 80))} mixes Latin letters with Cyrillic or Greek ones, which look alike; use one script`,
    );
  return normal;
}

export function checkPassword(password: string): void {
  if (password.length < USER_LIMITS.passwordMinLength || password.length > USER_LIMITS.passwordMaxLength)
    throw new ConfigError(
      `a password is ${USER_LIMITS.passwordMinLength}-${USER_LIMITS.passwordMaxLength} characters long`,
    );
}

/** A hash of nothing anyone knows: an unknown name costs as long as a known one. */
let decoy: Promise<string> | undefined;

export class UserStore {
  readonly #db: Database;
  readonly #settings: Settings;

  constructor(db: Database) {
    this.#db = db;
    this.#settings = new Settings(db);
  }

  async add(name: string, role: Role, password: string): Promise<UserRecord> {
    const normal = checkUserName(name);
    checkPassword(password);
    if (!isRole(role)) throw new ConfigError(`the role is one of ${ROLES.join(', ')}`);
    const taken = (await this.list()).find((user) => nameKey(user.name) === nameKey(normal));
    if (taken) throw new ConfigError(`there is a user '${taken.name}' already (names ignore case)`);
    const now = new Date().toISOString();
    const id = randomUUID();
    await this.#db.run(
      'INSERT INTO users (id, name, role, password_hash, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?, ?)',
      [id, normal, role, await hash(password, HASH_OPTIONS), now, now],
    );
    await this.#settings.protect('users');
    return (await this.get(id)) as UserRecord;
  }

  async get(id: string): Promise<UserRecord | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(`${SELECT} WHERE id = ?`, [id]);
    return row ? fromRow(row, COLUMNS) : undefined;
  }

  async find(name: string): Promise<UserRecord | undefined> {
    const [row] = await this.#db.query<Record<string, unknown>>(`${SELECT} WHERE name = ?`, [
      name.normalize('NFKC'),
    ]);
    return row ? fromRow(row, COLUMNS) : undefined;
  }

  async list(): Promise<UserRecord[]> {
    const rows = await this.#db.query<Record<string, unknown>>(`${SELECT} ORDER BY name`);
    return rows.map((r) => fromRow(r, COLUMNS));
  }

  async #named(name: string): Promise<UserRecord> {
    const user = await this.find(name);
    if (!user) throw new PathotypeError('ERR_NOT_FOUND', `no user '${name.slice(0, 80)}'`);
    return user;
  }

  /** Disabled, not deleted: its sessions and keys stop working, its audit rows keep its name. */
  async disable(name: string): Promise<UserRecord> {
    const user = await this.#named(name);
    await this.#db.run('UPDATE users SET disabled_at = COALESCE(disabled_at, ?) WHERE id = ?', [
      new Date().toISOString(),
      user.id,
    ]);
    return (await this.get(user.id)) as UserRecord;
  }

  /** A new password; sessions made before it end, and a lock is lifted. */
  async resetPassword(name: string, password: string): Promise<UserRecord> {
    checkPassword(password);
    const user = await this.#named(name);
    await this.#db.run(
      'UPDATE users SET password_hash = ?, password_changed_at = ?, failed_logins = 0, locked_until = NULL WHERE id = ?',
      [await hash(password, HASH_OPTIONS), new Date().toISOString(), user.id],
    );
    return (await this.get(user.id)) as UserRecord;
  }

  /**
   * The user a name and password belong to. Wrong ones count against the account; after
   * USER_LIMITS.failedLogins in a row it is locked for USER_LIMITS.lockMinutes (ERR_LOCKED).
   * Every refusal but the lock says the same, so names cannot be probed.
   */
  async authenticate(name: string, password: string): Promise<UserRecord> {
    const refused = new PathotypeError('ERR_LOGIN', 'wrong user name or password');
    if (name.length > USER_LIMITS.nameLength || password.length > USER_LIMITS.passwordMaxLength)
      throw refused;
    const [row] = await this.#db.query<Record<string, unknown> & { password_hash: string }>(
      `SELECT ${columnNames(COLUMNS).join(', ')}, password_hash FROM users WHERE name = ?`,
      [name.normalize('NFKC')],
    );
    if (!row) {
      decoy ??= hash(`decoy-${randomUUID()}`, HASH_OPTIONS);
      await verify(await decoy, password).catch(() => false);
      throw refused;
    }
    const user = fromRow(row, COLUMNS);
    const now = Date.now();
    if (user.lockedUntil && Date.parse(user.lockedUntil) > now)
      throw new PathotypeError(
        'ERR_LOCKED',
        `too many wrong passwords: the account is locked until ${user.lockedUntil.slice(11, 16)} UTC; try again then, or ask an administrator to reset the password`,
      );
    if (!(await verify(row.password_hash, password).catch(() => false))) {
      const failed = user.failedLogins + 1;
      const locks = failed >= USER_LIMITS.failedLogins;
      await this.#db.run('UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?', [
        locks ? 0 : failed,
        locks ? new Date(now + USER_LIMITS.lockMinutes * 60_000).toISOString() : user.lockedUntil,
        user.id,
      ]);
      if (locks)
        throw new PathotypeError(
          'ERR_LOCKED',
          `too many wrong passwords: the account is locked for ${USER_LIMITS.lockMinutes} minutes`,
        );
      throw refused;
    }
    if (user.disabledAt) throw refused;
    if (user.failedLogins > 0 || user.lockedUntil)
      await this.#db.run('UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?', [user.id]);
    return user;
  }
}
