/**
 * A server of a shared deployment in its own process, for the test that kills one: it serves
 * until killed, with a short job expiry so that a job it held is retried soon after.
 */
import { buildServer } from '../../src/serve/app.js';

const [modelDir = '', dataDir = '', database = '', slideRoot = '', expireSeconds = '10'] =
  process.argv.slice(2);
const server = await buildServer({
  modelDir,
  dataDir,
  database,
  slideRoot,
  sharedQueue: { expireSeconds: Number(expireSeconds), maintenanceSeconds: 1 },
});
process.stdout.write(`ready ${await server.app.listen({ host: '127.0.0.1', port: 0 })}\n`);
