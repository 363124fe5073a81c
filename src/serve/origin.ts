/**
 * The server's own origin, from its configuration and never from a request's Host: the one set
 * with `--public-origin`, the proxy's X-Forwarded-Proto and -Host under `--trust-proxy`, or
 * else the loopback names at the port it listens on. Cross-site checks compare a request's
 * Origin (or Referer) with it. The headers that name a host are parsed here, defensively: one
 * that is not a host is a 400, never a 500.
 */
import type { Server } from 'node:http';

import type { FastifyInstance, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

import { ConfigError, PathotypeError } from '../errors.js';

declare module 'fastify' {
  interface FastifyInstance {
    /** The origins this server's own pages have (normalised: scheme, host, port if not default). */
    ownOrigins: (request: FastifyRequest) => readonly string[];
  }
}

export interface OriginOptions {
  /** As configured (--public-origin), checked by publicOrigin(). */
  publicOrigin?: string;
  /** Behind a reverse proxy: its X-Forwarded-Proto and X-Forwarded-Host name the origin. */
  trustProxy: boolean;
  tls: boolean;
}

/** A host and optional port as a Host header may carry it: a name, IPv4, or [IPv6]. */
const HOST =
  /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]{2,45}\])(?::\d{1,5})?$/;

/** The origin a header value names (Origin, or a Referer's), normalised; null when it names none. */
export function originOf(value: string | undefined): string | null {
  if (!value || value === 'null') return null;
  try {
    const url = new URL(value);
    return url.protocol === 'http:' || url.protocol === 'https:' ? url.origin : null;
  } catch {
    return null;
  }
}

/** --public-origin as an origin: http(s), a host, a port if any, nothing else. */
export function publicOrigin(value: string): string {
  const origin = originOf(value);
  if (!origin || origin !== value.replace(/\/$/, ''))
    throw new ConfigError(
      `--public-origin takes the address browsers reach this server at, as https://HOST[:PORT] (got '${value.slice(0, 200)}')`,
    );
  return origin;
}

/** One value of a header that must hold a host (Host, X-Forwarded-Host): refused (400) otherwise. */
function hostHeader(request: FastifyRequest, name: 'host' | 'x-forwarded-host'): string | undefined {
  const value = request.headers[name];
  if (value === undefined) return undefined;
  const first = (typeof value === 'string' ? value : (value[0] ?? '')).split(',')[0]?.trim() ?? '';
  if (!HOST.test(first))
    throw new PathotypeError(
      'ERR_REQUEST',
      `the ${name === 'host' ? 'Host' : 'X-Forwarded-Host'} header does not name a host`,
    );
  return first;
}

/** The loopback names a browser on this machine uses for the port the server listens on. */
function loopbackOrigins(server: Server, tls: boolean): string[] {
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : tls ? 443 : 80;
  const scheme = tls ? 'https' : 'http';
  return ['localhost', '127.0.0.1', '[::1]']
    .map((host) => originOf(`${scheme}://${host}:${port}`))
    .filter((o): o is string => o !== null);
}

function origins(app: FastifyInstance, options: OriginOptions): void {
  const configured = options.publicOrigin ? [publicOrigin(options.publicOrigin)] : null;
  app.decorate('ownOrigins', (request: FastifyRequest): readonly string[] => {
    if (configured) return configured;
    if (options.trustProxy) {
      const host = hostHeader(request, 'x-forwarded-host') ?? hostHeader(request, 'host');
      const proto = String(request.headers['x-forwarded-proto'] ?? (options.tls ? 'https' : 'http'))
        .split(',')[0]
        ?.trim();
      if (proto !== 'http' && proto !== 'https')
        throw new PathotypeError('ERR_REQUEST', 'the X-Forwarded-Proto header is neither http nor https');
      const origin = host ? originOf(`${proto}://${host}`) : null;
      return origin ? [origin] : [];
    }
    return loopbackOrigins(app.server, options.tls);
  });
  // Every request's Host is a host (Node's parser lets any visible text through).
  app.addHook('onRequest', async (request) => {
    hostHeader(request, 'host');
    if (options.trustProxy) hostHeader(request, 'x-forwarded-host');
    return Promise.resolve();
  });
}

export default fp(origins, { name: 'pathotype-origins' });
