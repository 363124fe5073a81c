/**
 * Slow and greedy clients: a request whose body arrives slower than a minimum rate over a
 * window is answered 408 and closed, freeing whatever slot it held (the header timeout already
 * cuts trickled headers); and what one client may hold at once is capped: uploads per user or
 * key, sign-in forms per address. Registered without encapsulation, so every route is watched.
 */
import { Socket } from 'node:net';

import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import fp from 'fastify-plugin';

import { PathotypeError } from '../errors.js';

/** The slowest a body may arrive: at least `bytesPerSecond` over each `windowMs`. */
export interface BodyRate {
  bytesPerSecond: number;
  windowMs: number;
}

/** Whether a request says it carries a body (a length above zero, or chunks). */
function hasBody(request: FastifyRequest): boolean {
  const length = request.headers['content-length'];
  return (length !== undefined && length !== '0') || request.headers['transfer-encoding'] !== undefined;
}

/**
 * Watches the socket's bytes while the body is still arriving: a window with fewer than the
 * rate allows ends the request with 408 (Connection: close), or, once something was answered
 * already, closes the socket. Counting the socket's bytes adds no reader to the body itself.
 */
function watchBody(request: FastifyRequest, reply: FastifyReply, rate: BodyRate): void {
  const socket = request.raw.socket;
  const least = (rate.bytesPerSecond * rate.windowMs) / 1000;
  let seen = socket.bytesRead;
  const stop = (): void => clearInterval(timer);
  const timer = setInterval(() => {
    if (request.raw.complete || socket.destroyed) {
      stop();
      return;
    }
    const arrived = socket.bytesRead - seen;
    seen = socket.bytesRead;
    if (arrived >= least) return;
    stop();
    if (reply.sent) return void socket.destroy();
    // The answer goes out, then the socket closes (Node ends a Connection: close socket after
    // the response); a client that never reads it is cut a second later.
    reply.raw.once('finish', () => setTimeout(() => socket.destroy(), 1000).unref());
    void reply
      .header('connection', 'close')
      .send(
        new PathotypeError(
          'ERR_TIMEOUT',
          `the request's body arrived at under ${rate.bytesPerSecond} bytes a second over ${rate.windowMs / 1000} s: the server stopped waiting for it`,
        ),
      );
  }, rate.windowMs);
  timer.unref();
  socket.once('close', stop);
}

function slowClients(app: FastifyInstance, options: { rate: BodyRate }): void {
  app.addHook('onRequest', (request, reply, done) => {
    // A request from a socket (not one injected in a test, whose body is there at once).
    if (hasBody(request) && request.raw.socket instanceof Socket) watchBody(request, reply, options.rate);
    done();
  });
}

export default fp(slowClients, { name: 'pathotype-slow-clients' });

/**
 * At most `cap` requests of one client in flight on the routes that use it; beyond, 429 at
 * once, before the body is read. A slot is held until the answer is sent or the client is gone.
 * A request of no client (`clientOf` gives null) is not capped here.
 */
export function capPerClient(
  cap: number,
  clientOf: (request: FastifyRequest) => string | null,
  refusal: (cap: number) => PathotypeError,
): (request: FastifyRequest, reply: FastifyReply) => Promise<void> {
  const held = new Map<string, number>();
  return (request, reply) => {
    const client = clientOf(request);
    if (client === null) return Promise.resolve();
    const count = held.get(client) ?? 0;
    if (count >= cap) {
      void reply.header('retry-after', '5');
      return Promise.reject(refusal(cap));
    }
    held.set(client, count + 1);
    reply.raw.once('close', () => {
      const left = (held.get(client) ?? 1) - 1;
      if (left > 0) held.set(client, left);
      else held.delete(client);
    });
    return Promise.resolve();
  };
}

/**
 * Whom an upload counts against: the user (through any of their keys and sessions) or service
 * key. Anonymous uploads, on an open server (one user's workstation), count against nobody but
 * the server's own bound.
 */
export function uploaderOf(request: FastifyRequest): string | null {
  return request.principal?.owner.id ?? null;
}
