/** The `pathotype` command line: one subcommand per stage of the workflow. */
import { CommanderError } from 'commander';

import { PathotypeError } from '../errors.js';
import { buildProgram } from './program.js';

export async function main(argv: readonly string[]): Promise<number> {
  try {
    await buildProgram().parseAsync([...argv], { from: 'user' });
    return 0;
  } catch (error) {
    if (error instanceof CommanderError) return error.exitCode;
    const message = error instanceof Error ? error.message : String(error);
    const code = error instanceof PathotypeError ? ` [${error.code}]` : '';
    process.stderr.write(`pathotype: ${message}${code}\n`);
    return 1;
  }
}

process.exitCode = await main(process.argv.slice(2));
