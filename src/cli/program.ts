/** The `pathotype` program: its commands and flags, built without running (the help tests read it). */
import { readFileSync } from 'node:fs';

import { Command } from 'commander';

import { registerBench } from './bench.js';
import { registerData } from './data.js';
import { registerEngine } from './engine.js';
import { registerPrepare } from './prepare.js';
import { registerEvaluate } from './evaluate.js';
import { registerFeatures } from './features.js';
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
  registerFeatures(program);
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
