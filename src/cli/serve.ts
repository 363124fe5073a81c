/** `pathotype serve` and `pathotype keys`: the web portal and REST API, and its API keys. */

import type { Command } from 'commander';
import { PathotypeError } from '../errors.js';

import { workspaceAt } from '../workspace.js';
import { buildServer, SERVE_DEFAULTS } from '../serve/app.js';
import type { KeyStore } from '../store/keys.js';
import { openStore } from '../store/open.js';
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
    .requiredOption('--model <dir>', 'model package directory (or a model name in the workspace)')
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
    .option('--bf16', 'bfloat16 autocast for inference')
    .option('--log', 'log every request')
    .action(
      async (
        flags: {
          model: string;
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
          log?: boolean;
        },
        command: Command,
      ) => {
        const modelDir = resolveModelDir(command, flags.model);
        const server = await buildServer({
          modelDir,
          dataDir: serveDataDir(command),
          keepImages: flags.keepImages,
          maxBytes: flags.maxMb * 1024 * 1024,
          maxPixels: flags.maxMegapixels * 1_000_000,
          maxWaiting: flags.maxWaiting,
          ...(flags.slideRoot ? { slideRoot: flags.slideRoot } : {}),
          ...(flags.database ? { database: flags.database } : {}),
          slideMaxGigabytes: flags.slideMaxGb,
          bf16: flags.bf16 ?? false,
          logger: flags.log ?? false,
        });
        const address = await server.app.listen({ host: flags.host, port: flags.port });
        process.stderr.write(
          `pathotype: serving ${server.predictor.manifest.name} v${server.predictor.manifest.version} at ${address} (research use only)\n`,
        );
        // Graceful shutdown: stop accepting, finish the requests in flight, then exit.
        const stop = (signal: string): void => {
          process.stderr.write(`pathotype: ${signal}: finishing requests in flight\n`);
          server.app.close().then(
            () => process.exit(0),
            () => process.exit(1),
          );
        };
        process.once('SIGTERM', () => stop('SIGTERM'));
        process.once('SIGINT', () => stop('SIGINT'));
      },
    );

  registerKeys(program);
}

/** `pathotype keys create | list | revoke`. */
function registerKeys(program: Command): void {
  const keys = program
    .command('keys')
    .description('API keys for the REST API (required once any exists)')
    .option(
      '--database <url>',
      'the PostgreSQL database of a shared deployment (default: the workspace SQLite)',
    );
  const withKeys = async <T>(command: Command, fn: (keys: KeyStore) => Promise<T>): Promise<T> => {
    const { database } = command.optsWithGlobals<{ database?: string }>();
    const store = await openStore(serveDataDir(command), database);
    try {
      return await fn(store.keys);
    } finally {
      await store.close();
    }
  };
  keys
    .command('create')
    .description('create a key; it is shown once and stored only as a hash')
    .requiredOption('--name <name>', 'who or what uses it')
    .action(async (flags: { name: string }, command: Command) => {
      await withKeys(command, async (keys) => {
        const { key, record } = await keys.create(flags.name);
        process.stdout.write(`${key}\n`);
        process.stderr.write(
          `created key ${record.id} (${record.prefix}…) for '${record.name}'; it is not shown again\n`,
        );
      });
    });
  keys
    .command('list')
    .description('keys with their prefix, owner and state')
    .option('--json', 'print as JSON')
    .action(async (flags: { json?: boolean }, command: Command) => {
      await withKeys(command, async (keys) => {
        const list = await keys.list();
        if (flags.json) process.stdout.write(`${JSON.stringify(list, null, 2)}\n`);
        else
          for (const k of list)
            process.stdout.write(
              `${k.id}  ${k.prefix}…  ${k.name}  ${k.revokedAt ? `revoked ${k.revokedAt}` : 'active'}\n`,
            );
      });
    });
  keys
    .command('revoke <id>')
    .description('revoke a key by id or prefix')
    .action(async (id: string, _flags: unknown, command: Command) => {
      await withKeys(command, async (keys) => {
        const key = await keys.revoke(id);
        if (!key) throw new PathotypeError('ERR_NOT_FOUND', `no key '${id}'`);
        process.stdout.write(`revoked ${key.id} (${key.name})\n`);
      });
    });
}
