/**
 * Portal sessions kept server-side, in the server's database: @fastify/session's store, so the
 * servers of a deployment share them and a logout on one ends the session on all.
 */
import type { Database } from './database.js';

/** What a session holds: who signed in, and when, for the idle and absolute timeouts. */
export interface PortalSession {
  userId?: string;
  createdAt?: number;
  lastSeen?: number;
}

type Callback = (error?: unknown) => void;

/** `T`: the session object as the session plugin types it. */
export class SessionStore<T extends object = object> {
  readonly #db: Database;
  /** How long a session row lives without being saved again (the longest timeout). */
  readonly #lifetimeMs: number;

  constructor(db: Database, lifetimeMs: number) {
    this.#db = db;
    this.#lifetimeMs = lifetimeMs;
  }

  set(id: string, session: T, callback: Callback): void {
    const expires = new Date(Date.now() + this.#lifetimeMs).toISOString();
    this.#db
      .run(
        'INSERT INTO sessions (id, data, expires_at) VALUES (?, ?, ?) ON CONFLICT (id) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at',
        [id, JSON.stringify(session), expires],
      )
      .then(() => callback(), callback);
  }

  get(id: string, callback: (error: unknown, session?: T | null) => void): void {
    this.#db
      .query<{ data: string | object }>('SELECT data FROM sessions WHERE id = ? AND expires_at > ?', [
        id,
        new Date().toISOString(),
      ])
      .then(([row]) => {
        const data = row?.data;
        callback(
          null,
          data === undefined ? null : ((typeof data === 'string' ? JSON.parse(data) : data) as T),
        );
      }, callback);
  }

  destroy(id: string, callback: Callback): void {
    this.#db.run('DELETE FROM sessions WHERE id = ?', [id]).then(() => callback(), callback);
  }

  /** Sessions past their lifetime: removed now and then, so the table does not grow. */
  async removeExpired(): Promise<number> {
    return this.#db.run('DELETE FROM sessions WHERE expires_at <= ?', [new Date().toISOString()]);
  }
}
