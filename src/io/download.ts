/**
 * Resumable, verified downloads. Bytes go to `<file>.part`; an interrupted download continues
 * with an HTTP range request; the finished file must match its checksum before it takes its
 * final name. Several URLs (an official one and mirrors) are tried in order. Without a network
 * it fails within seconds with a message saying what to do instead.
 */
import { createWriteStream, existsSync } from 'node:fs';
import { rename, rm, stat, truncate } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Transform } from 'node:stream';

import { PathotypeError, type ErrorCode } from '../errors.js';
import { hashFile } from './hash.js';
import { ensureDir } from '../workspace.js';

/** How long a connection may stay silent before the download moves on to the next address. */
export const DEFAULT_IDLE_TIMEOUT_MS = 15_000;

export class DownloadError extends PathotypeError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'DownloadError';
  }
}

export interface DownloadOptions {
  urls: readonly string[];
  destination: string;
  checksum?: { algorithm: 'sha1' | 'md5' | 'sha256'; digest: string };
  /** Socket idle limit: connecting or a stalled transfer fails after this long. Default 15 s. */
  idleTimeoutMs?: number;
  /** Refuse bodies larger than this. Default 8 GiB. */
  maxBytes?: number;
  /** What to tell the user when no URL can be reached. */
  offlineHint?: string;
  onProgress?: (received: number, total: number | undefined) => void;
}

export interface DownloadResult {
  path: string;
  url: string | null;
  bytes: number;
  resumedFrom: number;
  alreadyThere: boolean;
}

const NETWORK_CODES = new Set([
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNREFUSED',
  'ENETUNREACH',
  'EHOSTUNREACH',
  'ETIMEDOUT',
  'ECONNRESET',
  'EPIPE',
]);

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: http.IncomingMessage;
}

function get(
  url: string,
  headers: Record<string, string>,
  idleTimeoutMs: number,
  redirects = 5,
): Promise<Response> {
  return new Promise((resolve, reject) => {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      reject(new DownloadError('ERR_DOWNLOAD', `'${url}' is not a valid URL`));
      return;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      reject(
        new DownloadError('ERR_DOWNLOAD', `only http and https URLs are supported, not ${parsed.protocol}`),
      );
      return;
    }
    const client = parsed.protocol === 'https:' ? https : http;
    const request = client.get(parsed, { headers: { 'user-agent': 'pathotype', ...headers } }, (response) => {
      const status = response.statusCode ?? 0;
      const location = response.headers.location;
      if (status >= 300 && status < 400 && location) {
        response.resume();
        if (redirects <= 0) {
          reject(new DownloadError('ERR_DOWNLOAD', `too many redirects from ${url}`));
          return;
        }
        get(new URL(location, parsed).href, headers, idleTimeoutMs, redirects - 1).then(resolve, reject);
        return;
      }
      resolve({ status, headers: response.headers, body: response });
    });
    request.setTimeout(idleTimeoutMs, () => {
      const error = new Error(
        `no answer from ${parsed.host} within ${idleTimeoutMs / 1000} s`,
      ) as NodeJS.ErrnoException;
      error.code = 'ETIMEDOUT';
      request.destroy(error);
    });
    request.on('error', reject);
  });
}

async function sizeOf(file: string): Promise<number> {
  try {
    return (await stat(file)).size;
  } catch {
    return 0;
  }
}

async function verify(file: string, checksum: DownloadOptions['checksum']): Promise<string | undefined> {
  if (!checksum) return undefined;
  const actual = await hashFile(file, checksum.algorithm);
  return actual.toLowerCase() === checksum.digest.toLowerCase() ? undefined : actual;
}

/** One URL: resume or start, stream to the part file. Returns the bytes resumed from. */
async function fetchInto(url: string, part: string, options: DownloadOptions): Promise<number> {
  const idle = options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS;
  const maxBytes = options.maxBytes ?? 8 * 1024 ** 3;
  const have = await sizeOf(part);
  const response = await get(url, have > 0 ? { range: `bytes=${have}-` } : {}, idle);
  const { status, headers, body } = response;
  let start = 0;
  if (status === 206) {
    const range = /bytes (\d+)-/.exec(headers['content-range'] ?? '');
    if (Number(range?.[1]) !== have) {
      body.resume();
      throw new DownloadError(
        'ERR_DOWNLOAD',
        `${url} answered a range request with the wrong range (${headers['content-range'] ?? 'none'})`,
      );
    }
    start = have;
  } else if (status === 416 && have > 0) {
    // The part file may already hold everything: the caller verifies it.
    body.resume();
    return have;
  } else if (status !== 200) {
    body.resume();
    throw new DownloadError('ERR_DOWNLOAD_HTTP', `${url} answered HTTP ${status}`);
  }
  const type = headers['content-type'] ?? '';
  if (/text\/html/i.test(type)) {
    body.resume();
    throw new DownloadError('ERR_DOWNLOAD_BODY', `${url} sent a web page (${type}) instead of the file`);
  }
  const length = Number(headers['content-length']);
  const total = Number.isFinite(length) ? start + length : undefined;
  if (total !== undefined && total > maxBytes) {
    body.resume();
    throw new DownloadError(
      'ERR_DOWNLOAD_BODY',
      `${url} offers ${total} bytes, more than the limit of ${maxBytes}`,
    );
  }
  if (start === 0 && have > 0) await truncate(part, 0);
  let received = start;
  const counter = new Transform({
    transform(chunk: Buffer, _encoding, callback) {
      received += chunk.length;
      if (received > maxBytes) {
        callback(
          new DownloadError('ERR_DOWNLOAD_BODY', `${url} sent more than the limit of ${maxBytes} bytes`),
        );
        return;
      }
      options.onProgress?.(received, total);
      callback(null, chunk);
    },
  });
  await pipeline(body, counter, createWriteStream(part, { flags: start > 0 ? 'a' : 'w' }));
  if (total !== undefined && received !== total) {
    throw new DownloadError(
      'ERR_DOWNLOAD',
      `${url} ended after ${received} of ${total} bytes; run the command again to resume`,
    );
  }
  return start;
}

export async function download(options: DownloadOptions): Promise<DownloadResult> {
  if (options.urls.length === 0) throw new DownloadError('ERR_DOWNLOAD', 'no URL to download from');
  ensureDir(path.dirname(options.destination));
  if (existsSync(options.destination) && !(await verify(options.destination, options.checksum))) {
    return {
      path: options.destination,
      url: null,
      bytes: await sizeOf(options.destination),
      resumedFrom: 0,
      alreadyThere: true,
    };
  }
  const part = `${options.destination}.part`;
  const failures: string[] = [];
  let networkOnly = true;
  for (const url of options.urls) {
    try {
      const resumedFrom = await fetchInto(url, part, options);
      const mismatch = await verify(part, options.checksum);
      if (mismatch) {
        await rm(part, { force: true });
        networkOnly = false;
        failures.push(
          `${url}: ${options.checksum?.algorithm ?? ''} is ${mismatch}, expected ${options.checksum?.digest ?? ''}`,
        );
        continue;
      }
      await rename(part, options.destination);
      return {
        path: options.destination,
        url,
        bytes: await sizeOf(options.destination),
        resumedFrom,
        alreadyThere: false,
      };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code ?? '';
      if (!NETWORK_CODES.has(code)) networkOnly = false;
      failures.push(`${url}: ${error instanceof Error ? error.message : String(error)}`);
    }
  }
  if (networkOnly) {
    throw new DownloadError(
      'ERR_OFFLINE',
      `cannot reach any download address (offline?):\n  ${failures.join('\n  ')}${options.offlineHint ? `\n${options.offlineHint}` : ''}`,
    );
  }
  const checksumOnly = failures.every((f) => / is [0-9a-f]+, expected /.test(f));
  throw new DownloadError(
    checksumOnly ? 'ERR_CHECKSUM' : 'ERR_DOWNLOAD',
    `the download failed${checksumOnly ? ' its checksum' : ''}:\n  ${failures.join('\n  ')}`,
  );
}
