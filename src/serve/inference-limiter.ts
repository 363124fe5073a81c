/**
 * Admission control for inference: at most `concurrency` jobs run, at most `maxWaiting` wait;
 * anything beyond is refused at once (the server answers 503 with Retry-After), so memory
 * stays bounded under any load.
 */
import type { FastifyReply, FastifyRequest } from 'fastify';

import { PathotypeError } from '../errors.js';

export class QueueFullError extends PathotypeError {
  constructor() {
    super('ERR_BUSY', 'the server is busy: too many predictions waiting');
    this.name = 'QueueFullError';
  }
}

export class InferenceLimiter {
  readonly concurrency: number;
  readonly maxWaiting: number;
  #running = 0;
  #waiting: (() => void)[] = [];

  constructor(concurrency: number, maxWaiting: number) {
    this.concurrency = Math.max(1, concurrency);
    this.maxWaiting = Math.max(0, maxWaiting);
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

  /** Uploads admitted: being read, waiting or running. */
  #admitted = 0;

  admit(): boolean {
    if (this.#admitted >= this.concurrency + this.maxWaiting) return false;
    this.#admitted++;
    return true;
  }

  release(): void {
    this.#admitted = Math.max(0, this.#admitted - 1);
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
 * maxWaiting` uploads are read, waiting or running at once (so memory is bounded by that many
 * bodies), and beyond it one is refused with 503 before its body is read.
 */
export function refuseWhenBusy(service: {
  limiter: InferenceLimiter;
}): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  return (_request, reply) => {
    const { limiter } = service;
    if (!limiter.admit()) return Promise.reject(new QueueFullError());
    reply.raw.once('close', () => limiter.release());
    return Promise.resolve();
  };
}
