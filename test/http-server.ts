/** A loopback file server for download tests: ranges, cut-offs, wrong types, errors. */
import { createHash } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface ServedFile {
  body: Buffer;
  contentType?: string;
  status?: number;
  /** Close the connection after this many bytes, on the first request only. */
  cutAfter?: number;
  /** Ignore Range headers (answer 200 with the whole body). */
  noRanges?: boolean;
}

export interface TestServer {
  url: (file: string) => string;
  requests: { path: string; range: string | undefined }[];
  close: () => Promise<void>;
}

export async function serveFiles(files: Record<string, ServedFile>): Promise<TestServer> {
  const requests: TestServer['requests'] = [];
  const cut = new Set<string>();
  const server = http.createServer((req, res) => {
    const name = req.url ?? '';
    requests.push({ path: name, range: req.headers.range });
    const file = files[name];
    if (!file) {
      res.writeHead(404).end('not found');
      return;
    }
    if (file.status) {
      res.writeHead(file.status, { 'content-type': file.contentType ?? 'text/plain' }).end('error');
      return;
    }
    let start = 0;
    const range = /bytes=(\d+)-/.exec(req.headers.range ?? '');
    if (range && !file.noRanges) {
      start = Number(range[1]);
      if (start >= file.body.length) {
        res.writeHead(416, { 'content-range': `bytes */${file.body.length}` }).end();
        return;
      }
      res.writeHead(206, {
        'content-type': file.contentType ?? 'application/gzip',
        'content-length': file.body.length - start,
        'content-range': `bytes ${start}-${file.body.length - 1}/${file.body.length}`,
      });
    } else {
      res.writeHead(200, {
        'content-type': file.contentType ?? 'application/gzip',
        'content-length': file.body.length,
      });
    }
    const body = file.body.subarray(start);
    if (file.cutAfter !== undefined && !cut.has(name)) {
      cut.add(name);
      // End the connection cleanly (FIN, not RST) so the bytes sent arrive before the cut.
      res.write(body.subarray(0, file.cutAfter), () => setTimeout(() => res.socket?.end(), 50));
      return;
    }
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: (file) => `http://127.0.0.1:${port}${file}`,
    requests,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

export function sha1(buffer: Buffer): string {
  return createHash('sha1').update(buffer).digest('hex');
}

/** A port on loopback where nothing listens. */
export async function closedPort(): Promise<number> {
  const server = http.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
