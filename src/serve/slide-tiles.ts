/**
 * A slide's Deep Zoom tiles for the viewers, bounded: a few slides kept open (least recently
 * used first out, and never one a request is reading), each tile made once and kept on disk up
 * to a size bound (oldest first out), each read capped by deepZoomTile itself.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { LIMITS } from '../limits.js';
import { deepZoomTile } from '../slide/deep-zoom.js';
import { Slide } from '../slide/slide.js';

interface OpenSlide {
  slide: Promise<Slide>;
  users: number;
  evicted: boolean;
}

export class SlideTiles {
  readonly #open = new Map<string, OpenSlide>();
  /** Cached tile files, least recently used first, with their sizes. */
  readonly #cached = new Map<string, number>();
  #cachedBytes = 0;
  readonly #cacheDir: string;

  /** The cache is this server's own (servers of a deployment share their data folder, not it). */
  constructor() {
    this.#cacheDir = mkdtempSync(path.join(os.tmpdir(), 'pathotype-tiles-'));
  }

  /** Runs `fn` on the job's slide, kept open for the next request. */
  async withSlide<T>(jobId: string, file: string, fn: (slide: Slide) => Promise<T>): Promise<T> {
    let entry = this.#open.get(jobId);
    if (entry) this.#open.delete(jobId);
    else {
      const slide = Slide.open(file);
      entry = { slide, users: 0, evicted: false };
      slide.catch(() => this.#open.delete(jobId));
    }
    this.#open.set(jobId, entry);
    entry.users++;
    this.#evict();
    try {
      return await fn(await entry.slide);
    } finally {
      entry.users--;
      if (entry.evicted && entry.users === 0) void entry.slide.then((s) => s.close()).catch(() => undefined);
    }
  }

  /** One JPEG tile, from the disk cache or read once and kept. */
  async tile(jobId: string, file: string, level: number, col: number, row: number): Promise<Buffer> {
    const cached = path.join(this.#cacheDir, jobId, String(level), `${col}_${row}.jpeg`);
    if (this.#cached.has(cached) && existsSync(cached)) {
      const size = this.#cached.get(cached) ?? 0;
      this.#cached.delete(cached);
      this.#cached.set(cached, size);
      return readFileSync(cached);
    }
    const jpeg = await this.withSlide(jobId, file, (slide) => deepZoomTile(slide, level, col, row));
    mkdirSync(path.dirname(cached), { recursive: true });
    writeFileSync(cached, jpeg);
    this.#cached.set(cached, jpeg.length);
    this.#cachedBytes += jpeg.length;
    while (this.#cachedBytes > LIMITS.tileCacheMegabytes * 2 ** 20) {
      const [oldest, size] = this.#cached.entries().next().value as [string, number];
      this.#cached.delete(oldest);
      this.#cachedBytes -= size;
      rmSync(oldest, { force: true });
    }
    return jpeg;
  }

  /** Beyond LIMITS.openSlides, the least recently used slide no request is reading closes. */
  #evict(): void {
    for (const [jobId, entry] of this.#open) {
      if (this.#open.size <= LIMITS.openSlides) return;
      if (entry.users > 0) continue;
      this.#open.delete(jobId);
      entry.evicted = true;
      void entry.slide.then((s) => s.close()).catch(() => undefined);
    }
  }

  async close(): Promise<void> {
    for (const entry of this.#open.values()) await entry.slide.then((s) => s.close()).catch(() => undefined);
    this.#open.clear();
    rmSync(this.#cacheDir, { recursive: true, force: true });
  }
}
