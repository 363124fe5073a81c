/**
 * Failed sign-ins slow the one who fails, never reveal a name (OWASP ASVS 2.2): counted for the
 * name typed, whether or not an account has it, so a known and an unknown name are throttled
 * alike. Per name and address, failures beyond a few back off (the address waits, doubling up
 * to a cap); per name, across addresses, failures beyond more delay every attempt a little, so
 * guessing from many addresses is slow while the owner, from an address that has not failed,
 * still signs in. Names are kept only as a keyed hash: a password typed into the name field is
 * not stored. Counted in the database, so the servers of a deployment count together.
 */
import { createHmac, randomBytes } from 'node:crypto';

import { USER_LIMITS } from '../limits.js';
import type { Database } from './database.js';
import { Settings } from './settings.js';

/** The row that counts a name's failures from every address. */
const ANY_ADDRESS = '';

export interface ThrottleState {
  /** Until when (epoch ms) this address may not try this name; null: it may. */
  lockedUntil: number | null;
  /** How long to wait before checking the password. */
  delayMs: number;
  /** The name's recent failures, from every address. */
  nameFailures: number;
}

/** How long an address that failed `failures` times in a row for a name waits, after the last. */
export function backoffMs(failures: number): number {
  if (failures < USER_LIMITS.failedLogins) return 0;
  const doubled = USER_LIMITS.backoffSeconds * 1000 * 2 ** (failures - USER_LIMITS.failedLogins);
  return Math.min(doubled, USER_LIMITS.lockMinutes * 60_000);
}

/** How long every attempt at a name waits once it failed `failures` times from anywhere. */
export function delayMs(failures: number): number {
  const beyond = failures - USER_LIMITS.nameFailuresBeforeDelay;
  return beyond < 0 ? 0 : Math.min((beyond + 1) * USER_LIMITS.delayStepMs, USER_LIMITS.maxDelayMs);
}

export class SignInThrottle {
  readonly #db: Database;
  readonly #settings: Settings;
  #secret: Promise<string> | undefined;

  constructor(db: Database) {
    this.#db = db;
    this.#settings = new Settings(db);
  }

  /** The name as stored: a keyed hash of it (callers pass names in their compared form, nameKey). */
  async #key(name: string): Promise<string> {
    this.#secret ??= this.#settings.setIfAbsent('sign_in_secret', randomBytes(32).toString('base64url'));
    return createHmac('sha256', await this.#secret)
      .update(name)
      .digest('hex');
  }

  /** Failures older than the window no longer count. */
  #windowStart(now: number): number {
    return now - USER_LIMITS.lockMinutes * 60_000;
  }

  async state(name: string, address: string, now = Date.now()): Promise<ThrottleState> {
    const rows = await this.#db.query<{
      address: string;
      failures: number | string;
      last_at: number | string;
    }>(
      'SELECT address, failures, last_at FROM sign_in_failures WHERE name_key = ? AND address IN (?, ?) AND last_at > ?',
      [await this.#key(name), ANY_ADDRESS, address, this.#windowStart(now)],
    );
    const of = (which: string) => rows.find((r) => r.address === which);
    const pair = of(address);
    const pairFailures = Number(pair?.failures ?? 0);
    const until = pair ? Number(pair.last_at) + backoffMs(pairFailures) : 0;
    const nameFailures = Number(of(ANY_ADDRESS)?.failures ?? 0);
    return { lockedUntil: until > now ? until : null, delayMs: delayMs(nameFailures), nameFailures };
  }

  /** One more failure for the name, from this address and from anywhere. */
  async failed(name: string, address: string, now = Date.now()): Promise<void> {
    const key = await this.#key(name);
    const start = this.#windowStart(now);
    for (const which of [ANY_ADDRESS, address])
      await this.#db.run(
        `INSERT INTO sign_in_failures (name_key, address, failures, last_at) VALUES (?, ?, 1, ?)
         ON CONFLICT (name_key, address) DO UPDATE SET
           failures = CASE WHEN sign_in_failures.last_at <= ? THEN 1 ELSE sign_in_failures.failures + 1 END,
           last_at = ?`,
        [key, which, now, start, now],
      );
    // Rows past the window count for nothing: the table holds the last window's names only.
    await this.#db.run('DELETE FROM sign_in_failures WHERE last_at <= ?', [start]);
  }

  /** A sign-in that succeeded clears its address's back-off for the name. */
  async succeeded(name: string, address: string): Promise<void> {
    await this.#db.run('DELETE FROM sign_in_failures WHERE name_key = ? AND address = ?', [
      await this.#key(name),
      address,
    ]);
  }

  /** An administrator lifts every back-off and delay of a name; the rows it removed. */
  async lift(name: string): Promise<number> {
    return this.#db.run('DELETE FROM sign_in_failures WHERE name_key = ?', [await this.#key(name)]);
  }
}
