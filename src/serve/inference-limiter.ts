/**
 * Admission control for inference: at most `concurrency` jobs run, at most `maxWaiting` wait;
 * anything beyond is refused at once (the server answers 503 with Retry-After), so memory
 * stays bounded under any load.
 */
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
    return this.#running >= this.concurrency && this.#waiting.length >= this.maxWaiting;
  }

  /** Runs `job` when a slot frees; rejects with QueueFullError when even the wait list is full. */
  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.#running >= this.concurrency) {
      if (this.#waiting.length >= this.maxWaiting) throw new QueueFullError();
      await new Promise<void>((resolve) => this.#waiting.push(resolve));
    } else {
      this.#running++;
    }
    try {
      return await job();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}
