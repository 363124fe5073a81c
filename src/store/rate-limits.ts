/**
 * @fastify/rate-limit's counters in the server's database, so the servers of a deployment count
 * together: one upsert per request, the window restarting when it has run out.
 */
import type { Database } from './database.js';

type IncrCallback = (error: Error | null, result?: { current: number; ttl: number }) => void;

/** A store class for @fastify/rate-limit (which constructs it), on this database. */
export function rateLimitStoreOn(db: Database) {
  return class DatabaseRateLimitStore {
    readonly #prefix: string;

    constructor(_options?: unknown, prefix = 'rl:') {
      this.#prefix = prefix;
    }

    incr(key: string, callback: IncrCallback, timeWindow = 60_000): void {
      const now = Date.now();
      db.query<{ hits: number | string; reset_at: number | string }>(
        `INSERT INTO rate_limits (key, hits, reset_at) VALUES (?, 1, ?)
         ON CONFLICT (key) DO UPDATE SET
           hits = CASE WHEN rate_limits.reset_at <= ? THEN 1 ELSE rate_limits.hits + 1 END,
           reset_at = CASE WHEN rate_limits.reset_at <= ? THEN ? ELSE rate_limits.reset_at END
         RETURNING hits, reset_at`,
        [this.#prefix + key, now + timeWindow, now, now, now + timeWindow],
      ).then(
        ([row]) =>
          callback(null, {
            current: Number(row?.hits ?? 1),
            ttl: Math.max(0, Number(row?.reset_at ?? 0) - now),
          }),
        (error: unknown) => callback(error instanceof Error ? error : new Error(String(error))),
      );
    }

    /** A route's own counters (the plugin passes its options; the route is in routeInfo). */
    child(routeOptions: {
      url?: string;
      routeInfo?: { method: string; url: string };
    }): DatabaseRateLimitStore {
      const route = routeOptions.routeInfo ?? { method: '', url: routeOptions.url ?? '' };
      return new DatabaseRateLimitStore(undefined, `${this.#prefix}${route.method}${route.url}:`);
    }
  };
}
