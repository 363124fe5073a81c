/** The `pathotype` command line: one subcommand per stage of the workflow. */
import { readFileSync } from 'node:fs';

import { Command, CommanderError } from 'commander';

import { PathotypeError } from '../errors.js';
import { registerBench } from './bench.js';
import { registerData } from './data.js';
import { registerEngine } from './engine.js';
import { registerPrepare } from './prepare.js';
import { registerEvaluate } from './evaluate.js';
import { registerCompare } from './compare.js';
import { registerExport } from './export.js';
import { registerPredict } from './predict.js';
import { registerRun } from './run.js';
import { registerTrain } from './train.js';
import { registerWeights } from './weights.js';
import { registerServe } from './serve.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as {
  version: string;
};

export function buildProgram(): Command {
  const program = new Command('pathotype')
    .description(
      'Learns to tell lymphoma subtypes apart in H&E images, and serves the result to pathologists',
    )
    .version(pkg.version)
    .showHelpAfterError()
    .option('-w, --workspace <dir>', 'workspace directory (catalog, patch stores, models)', 'workspace')
    .exitOverride();
  registerData(program);
  registerPrepare(program);
  registerTrain(program);
  registerEvaluate(program);
  registerCompare(program);
  registerPredict(program);
  registerExport(program);
  registerRun(program);
  registerWeights(program);
  registerServe(program);
  registerEngine(program);
  registerBench(program);
  return program;
}

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
