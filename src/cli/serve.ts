/** `pathotype serve`: the web portal and REST API. */
import { readFileSync } from 'node:fs';

import type { Command } from 'commander';

import { ConfigError } from '../errors.js';
import { SHUTDOWN_GRACE_SECONDS } from '../limits.js';
import { workspaceAt } from '../workspace.js';
import { buildServer, SERVE_DEFAULTS } from '../serve/app.js';
import { openStore } from '../store/open.js';
import { registerAccess } from './access.js';
import { registerReviews } from './reviews.js';
import { resolveModelDir } from './context.js';
import { nonNegativeInt, positiveInt } from './options.js';

function serveDataDir(command: Command): string {
  const { workspace } = command.optsWithGlobals<{ workspace: string }>();
  return workspaceAt(workspace).serveDir;
}

export function registerServe(program: Command): void {
  program
    .command('serve')
    .description('start the web portal and the REST API (OpenAPI at /openapi.json, docs at /docs)')
    .requiredOption(
      '--model <dir...>',
      "model package directories (or model names in the workspace): the first answers uploads by default; each is kept in the server's registry, and one version of each name is active (promoted by an admin)",
    )
    .option('--host <host>', 'address to listen on', '127.0.0.1')
    .option('--port <n>', 'port (0: any free port)', nonNegativeInt, 8080)
    .option('--max-mb <n>', 'largest upload in MiB', positiveInt, SERVE_DEFAULTS.maxMegabytes)
    .option(
      '--max-megapixels <n>',
      'largest image in megapixels (decompression bombs are refused from the header)',
      positiveInt,
      SERVE_DEFAULTS.maxPixels / 1_000_000,
    )
    .option(
      '--max-waiting <n>',
      'requests that may wait for inference before 503',
      positiveInt,
      SERVE_DEFAULTS.maxWaiting,
    )
    .option(
      '--database <url>',
      'records and API keys in PostgreSQL (postgres://...), shared by every server started with it; uploads go to the workspace serve folder, which they must share',
    )
    .option(
      '--slide-root <dir>',
      'slides may be submitted by a path under this folder (files too big to upload)',
    )
    .option(
      '--slide-max-gb <n>',
      'largest slide upload in GiB (streamed to disk)',
      positiveInt,
      SERVE_DEFAULTS.slideMaxGigabytes,
    )
    .option('--no-keep-images', 'do not keep uploaded images (results cannot show them again)')
    .option('--bf16', 'bfloat16 autocast even without native bf16 (default: only where the CPU has it)')
    .option('--no-bf16', 'float32 throughout')
    .option(
      '--allow-anonymous',
      'serve anonymous requests even though users or keys exist (and on an address other than loopback)',
    )
    .option('--tls-cert <file>', 'serve HTTPS with this PEM certificate (with --tls-key); sends HSTS')
    .option('--tls-key <file>', "the certificate's PEM private key")
    .option(
      '--trust-proxy <hops>',
      "behind a reverse proxy: trust its X-Forwarded-* headers ('true', a hop count or addresses)",
    )
    .option(
      '--public-origin <url>',
      "the address browsers reach this server at (https://HOST[:PORT]): its own origin for cross-site checks, never taken from a request's Host",
    )
    .option('--cors <origin...>', 'origins whose pages may call the REST API (CORS is off without it)')
    .option('--log', 'log every request')
    .action(serveCommand);

  registerAccess(program, serveDataDir);
  registerReviews(program, serveDataDir);
}

interface ServeFlags {
  model: string[];
  host: string;
  port: number;
  maxMb: number;
  maxMegapixels: number;
  maxWaiting: number;
  keepImages: boolean;
  database?: string;
  slideRoot?: string;
  slideMaxGb: number;
  bf16?: boolean;
  allowAnonymous?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  trustProxy?: string;
  publicOrigin?: string;
  cors?: string[];
  log?: boolean;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/;

function trustProxyOf(value: string | undefined): boolean | string | number | undefined {
  if (value === undefined) return undefined;
  if (value === 'true') return true;
  return /^\d+$/.test(value) ? Number(value) : value;
}

async function serveCommand(flags: ServeFlags, command: Command): Promise<void> {
  if ((flags.tlsCert === undefined) !== (flags.tlsKey === undefined))
    throw new ConfigError('--tls-cert and --tls-key go together');
  const dataDir = serveDataDir(command);
  // An open server (no user, no key) only on loopback, unless the operator says so.
  if (!LOOPBACK.test(flags.host) && !flags.allowAnonymous) {
    const store = await openStore(dataDir, flags.database);
    const closed = await store.settings.isProtected().finally(() => store.close());
    if (!closed)
      throw new ConfigError(
        `refusing to serve patient data on ${flags.host} to anyone: add a user first ('pathotype users add NAME --role admin'), or give --allow-anonymous`,
      );
  }
  const trustProxy = trustProxyOf(flags.trustProxy);
  // Off loopback, browsers name the server by an address it cannot know: it is told, or a proxy says.
  if (!LOOPBACK.test(flags.host) && !flags.publicOrigin && trustProxy === undefined)
    throw new ConfigError(
      `serving on ${flags.host}: give --public-origin https://HOST[:PORT] (the address browsers use), or --trust-proxy behind a reverse proxy; the server never takes its origin from a request's Host`,
    );
  const [first = '', ...more] = flags.model.map((m) => resolveModelDir(command, m));
  const server = await buildServer({
    modelDir: first,
    moreModelDirs: more,
    dataDir,
    keepImages: flags.keepImages,
    maxBytes: flags.maxMb * 1024 * 1024,
    maxPixels: flags.maxMegapixels * 1_000_000,
    maxWaiting: flags.maxWaiting,
    ...(flags.slideRoot ? { slideRoot: flags.slideRoot } : {}),
    ...(flags.database ? { database: flags.database } : {}),
    slideMaxGigabytes: flags.slideMaxGb,
    ...(flags.bf16 !== undefined ? { bf16: flags.bf16 } : {}),
    logger: flags.log ?? false,
    allowAnonymous: flags.allowAnonymous ?? false,
    ...(flags.tlsCert && flags.tlsKey
      ? { tls: { cert: readFileSync(flags.tlsCert), key: readFileSync(flags.tlsKey) } }
      : {}),
    ...(trustProxy !== undefined ? { trustProxy } : {}),
    ...(flags.publicOrigin ? { publicOrigin: flags.publicOrigin } : {}),
    ...(flags.cors ? { corsOrigins: flags.cors } : {}),
  });
  const address = await server.app.listen({ host: flags.host, port: flags.port });
  const open = !(await server.store.settings.isProtected()) || flags.allowAnonymous;
  process.stderr.write(
    `pathotype: serving ${server.models
      .all()
      .map((m) => `${m.id}${server.models.isActive(m.id) ? ' (active)' : ''}`)
      .join(', ')} at ${address} (research use only)\n` +
      (open
        ? 'pathotype: this server is OPEN: anyone who reaches it sees every result; add a user to close it\n'
        : 'pathotype: sign-in required (users and API keys)\n'),
  );
  // Graceful shutdown: stop accepting, finish the requests in flight, hand a running slide job
  // back to the queue, then exit; whatever still runs after the grace period ends with the process.
  const stop = (signal: string): void => {
    process.stderr.write(
      `pathotype: ${signal}: finishing requests in flight (at most ${SHUTDOWN_GRACE_SECONDS} s)\n`,
    );
    setTimeout(() => {
      process.stderr.write('pathotype: the grace period is over: exiting\n');
      process.exit(1);
    }, SHUTDOWN_GRACE_SECONDS * 1000).unref();
    server.app.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
