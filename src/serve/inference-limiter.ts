/**
 * Admission control for inference: at most `concurrency` jobs run, at most `maxWaiting` wait;
 * anything beyond is refused at once (the server answers 503 with Retry-After), so memory
 * stays bounded under any load; and one client (a user with all their keys, a service key, an
 * address) holds at most `perClient` of those places, so it cannot take them all.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

import { PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { uploaderOf } from './slow-clients.js';

export class QueueFullError extends PathotypeError {
  constructor() {
    super('ERR_BUSY', 'the server is busy: too many predictions waiting');
    this.name = 'QueueFullError';
  }
}

export class InferenceLimiter {
  readonly concurrency: number;
  readonly maxWaiting: number;
  readonly perClient: number;
  #running = 0;
  #waiting: (() => void)[] = [];

  constructor(concurrency: number, maxWaiting: number, perClient: number = LIMITS.uploadsPerClient) {
    this.concurrency = Math.max(1, concurrency);
    this.maxWaiting = Math.max(0, maxWaiting);
    this.perClient = Math.max(1, perClient);
  }

  get running(): number {
    return this.#running;
  }

  get waiting(): number {
    return this.#waiting.length;
  }

  get full(): boolean {
    return (
      (this.#running >= this.concurrency && this.#waiting.length >= this.maxWaiting) ||
      this.#admitted >= this.concurrency + this.maxWaiting
    );
  }

  /** Uploads admitted: being read, waiting or running; in all and per client. */
  #admitted = 0;
  #byClient = new Map<string, number>();

  /**
   * A place for one upload of `client` (null: of no one client); refused when all are taken, or
   * when the client holds its share.
   */
  admit(client: string | null = null): 'admitted' | 'full' | 'client' {
    if (this.#admitted >= this.concurrency + this.maxWaiting) return 'full';
    const held = client === null ? 0 : (this.#byClient.get(client) ?? 0);
    if (held >= this.perClient) return 'client';
    this.#admitted++;
    if (client !== null) this.#byClient.set(client, held + 1);
    return 'admitted';
  }

  release(client: string | null = null): void {
    this.#admitted = Math.max(0, this.#admitted - 1);
    if (client === null) return;
    const held = (this.#byClient.get(client) ?? 1) - 1;
    if (held > 0) this.#byClient.set(client, held);
    else this.#byClient.delete(client);
  }

  /**
   * Runs `job` when a slot frees; rejects with QueueFullError when even the wait list is full. A
   * request whose client has gone (`signal`) leaves the wait list and never takes the engine.
   */
  async run<T>(job: () => Promise<T>, signal?: AbortSignal): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.maxWaiting) throw new QueueFullError();
      await new Promise<void>((resolve, reject) => {
        const waiter = (): void => {
          signal?.removeEventListener('abort', leave);
          resolve();
        };
        const leave = (): void => {
          this.#waiting = this.#waiting.filter((w) => w !== waiter);
          reject(new PathotypeError('ERR_ABORTED', 'the client went away while its request waited'));
        };
        signal?.addEventListener('abort', leave, { once: true });
        this.#waiting.push(waiter);
      });
    } else {
      this.#running++;
    }
    try {
      if (signal?.aborted) throw new PathotypeError('ERR_ABORTED', 'the client went away before its turn');
      return await job();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

/**
 * A route hook that admits an upload only while it can be held: at most `concurrency +
 * maxWaiting` uploads are read, waiting or running at once, at most `perClient` of one client;
 * beyond, 503 (all taken) or 429 (the client's share taken) before the body is read.
 */
export function refuseWhenBusy(service: {
  limiter: InferenceLimiter;
}): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return (request, reply) => {
    const { limiter } = service;
    const client = uploaderOf(request);
    const admitted = limiter.admit(client);
    if (admitted === 'full') return Promise.reject(new QueueFullError());
    if (admitted === 'client') {
      void reply.header('retry-after', '5');
      return Promise.reject(
        new PathotypeError(
          'ERR_RATE_LIMITED',
          `you have ${limiter.perClient} uploads in progress already: send the next when one is answered`,
        ),
      );
    }
    reply.raw.once('close', () => limiter.release(client));
    return Promise.resolve();
  };
}
