/**
 * Accounts: a name, a role, a password hashed with argon2id (@node-rs/argon2, OWASP's minimum
 * parameters: 19 MiB, two passes), disabled rather than deleted so the audit keeps naming them.
 * Failed sign-ins are throttled by name and address (sign-in-throttle.ts), never by account.
 */
import { randomUUID } from 'node:crypto';

import { Algorithm, hash, verify } from '@node-rs/argon2';

import { ConfigError, PathotypeError } from '../errors.js';
import { USER_LIMITS } from '../limits.js';
import type { Database } from './database.js';
import { columnNames, fromRow, type Columns } from './rows.js';
import { Settings } from './settings.js';
import { SignInThrottle } from './sign-in-throttle.js';

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
}

const COLUMNS: Columns<UserRecord> = {
  id: ['id', 'text'],
  name: ['name', 'text'],
  role: ['role', 'text'],
  createdAt: ['created_at', 'text'],
  passwordChangedAt: ['password_changed_at', 'text'],
  disabledAt: ['disabled_at', 'text'],
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
  readonly #throttle: SignInThrottle;

  constructor(db: Database) {
    this.#db = db;
    this.#settings = new Settings(db);
    this.#throttle = new SignInThrottle(db);
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
    await this.#db.run('UPDATE users SET password_hash = ?, password_changed_at = ? WHERE id = ?', [
      await hash(password, HASH_OPTIONS),
      new Date().toISOString(),
      user.id,
    ]);
    await this.#throttle.lift(nameKey(user.name));
    return (await this.get(user.id)) as UserRecord;
  }

  /**
   * The user a name and password belong to, signing in from `address`. Every refusal but the
   * back-off says the same, and a name with no account goes the same way as one with an account
   * (the same throttle, a hash to verify, a failure counted), so names cannot be probed by the
   * answer or its time. An address that failed too often for a name waits (ERR_LOCKED, known
   * or not); a name failed too often from everywhere is answered a little later, owner included.
   */
  async signIn(name: string, password: string, address: string): Promise<UserRecord> {
    const refused = new PathotypeError('ERR_LOGIN', 'wrong user name or password');
    if (name.length > USER_LIMITS.nameLength || password.length > USER_LIMITS.passwordMaxLength)
      throw refused;
    const key = nameKey(name);
    const throttle = await this.#throttle.state(key, address);
    if (throttle.lockedUntil !== null)
      throw new PathotypeError(
        'ERR_LOCKED',
        `too many failed sign-ins for this name from this address: try again in ${Math.ceil((throttle.lockedUntil - Date.now()) / 60_000)} min, or ask an administrator to lift the lock`,
      );
    if (throttle.delayMs > 0) await new Promise((resolve) => setTimeout(resolve, throttle.delayMs));
    const [row] = await this.#db.query<Record<string, unknown> & { password_hash: string }>(
      `SELECT ${columnNames(COLUMNS).join(', ')}, password_hash FROM users WHERE name = ?`,
      [name.normalize('NFKC')],
    );
    decoy ??= hash(`decoy-${randomUUID()}`, HASH_OPTIONS);
    const passwordHash = row?.password_hash ?? (await decoy);
    const matches = await verify(passwordHash, password).catch(() => false);
    const user = row ? fromRow(row, COLUMNS) : undefined;
    if (!user || !matches || user.disabledAt) {
      await this.#throttle.failed(key, address);
      throw refused;
    }
    await this.#throttle.succeeded(key, address);
    return user;
  }

  /** Lifts every back-off and delay on a user's name (an administrator's call); the user. */
  async unlock(name: string): Promise<UserRecord> {
    const user = await this.#named(name);
    await this.#throttle.lift(nameKey(user.name));
    return user;
  }

  /** The user's failed sign-ins of the last USER_LIMITS.lockMinutes, from every address. */
  async recentFailures(user: UserRecord): Promise<number> {
    return (await this.#throttle.state(nameKey(user.name), '')).nameFailures;
  }
}
