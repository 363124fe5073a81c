/** Server-wide facts every server of a deployment must agree on: protected mode, the session secret. */
import { randomBytes } from 'node:crypto';

import type { Database } from './database.js';

export class Settings {
  readonly #db: Database;

  constructor(db: Database) {
    this.#db = db;
  }

  async get(name: string): Promise<string | undefined> {
    const [row] = await this.#db.query<{ value: string }>('SELECT value FROM settings WHERE name = ?', [
      name,
    ]);
    return row?.value;
  }

  /** The value stored under `name`; `value` when none was, stored once even by servers racing. */
  async setIfAbsent(name: string, value: string): Promise<string> {
    await this.#db.run('INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT (name) DO NOTHING', [
      name,
      value,
    ]);
    return (await this.get(name)) ?? value;
  }

  /**
   * Set when the first user or key is made, and never unset: from then on every route needs a
   * session or a key, however many users and keys are active.
   */
  async isProtected(): Promise<boolean> {
    return (await this.get('protected')) !== undefined;
  }

  async protect(reason: 'users' | 'keys'): Promise<void> {
    await this.setIfAbsent('protected', reason);
  }

  /** The secret that signs session cookies, shared by the servers of a deployment. */
  sessionSecret(): Promise<string> {
    return this.setIfAbsent('session_secret', randomBytes(32).toString('base64url'));
  }
}
