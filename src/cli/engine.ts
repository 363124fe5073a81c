/** `pathotype engine ...`: what the compute engine is and can do on this machine. */
import type { Command } from 'commander';
import { ConfigError } from '../errors.js';

import { engineInfo, getThreads, Network } from '../engine/network.js';
import { cpuHasNativeBf16, precisionOf, resolveBf16 } from '../engine/precision.js';
import { resolveInferenceEngine } from '../engine/inference-engine.js';
import { measureGemmRate } from '../engine/gemm-rate.js';
import { ARCHITECTURES, buildSpec, type Architecture } from '../engine/zoo.js';
import { positiveInt } from './options.js';

export function registerEngine(program: Command): void {
  const engine = program.command('engine').description('the libtorch compute engine');
  engine
    .command('info')
    .description('libtorch version, threads, oneDNN and bf16 support')
    .option('--json', 'print as JSON')
    .option('--gemm', "also measure the machine's own limit: large GEMMs through libtorch (a few seconds)")
    .action(async (flags: { json?: boolean; gemm?: boolean }) => {
      const bf16 = resolveBf16('auto');
      const info = {
        ...engineInfo(),
        threads: getThreads(),
        cpuHasBf16: cpuHasNativeBf16(),
        // What bf16: auto (every default) computes in here, PATHOTYPE_BF16 included.
        precision: precisionOf(bf16),
        // The engine that runs networks forward under the default 'auto' (inference-engine.ts).
        inferenceEngine: resolveInferenceEngine('auto', bf16),
        ...(flags.gemm ? { gemm: [await measureGemmRate(false), await measureGemmRate(true)] } : {}),
      };
      if (flags.json) {
        process.stdout.write(`${JSON.stringify(info, null, 2)}\n`);
        return;
      }
      process.stdout.write(
        `libtorch ${info.torchVersion}, oneDNN ${info.mkldnn ? 'yes' : 'no'}, OpenMP ${info.openmp ? 'yes' : 'no'}, ` +
          `${info.threads} threads, native bf16 ${info.cpuHasBf16 ? 'yes' : 'no'}, computes in ${info.precision}` +
          `${process.env.PATHOTYPE_BF16 ? ` (PATHOTYPE_BF16=${process.env.PATHOTYPE_BF16})` : ''}, ` +
          `inference on ${info.inferenceEngine}, memory ${info.memoryPolicy}\n` +
          (info.gemm
            ? `GEMM rate (libtorch, ${info.gemm[0]?.side ?? 0}^3, ${info.threads} threads): ` +
              `${info.gemm.map((g) => `${g.precision} ${g.gflops.toFixed(0)} GFLOP/s`).join(', ')}\n`
            : ''),
      );
    });
  engine
    .command('summary <architecture>')
    .description(`build a zoo network and print its layers' parameter count (${ARCHITECTURES.join(', ')})`)
    .option('--size <px>', 'input patch side', positiveInt, 64)
    .option('--classes <n>', 'classes', positiveInt, 3)
    .option('--alpha <x>', 'MobileNet width multiplier', Number, 1)
    .action(async (architecture: string, flags: { size: number; classes: number; alpha: number }) => {
      if (!(ARCHITECTURES as readonly string[]).includes(architecture)) {
        throw new ConfigError(`unknown architecture '${architecture}' (${ARCHITECTURES.join(', ')})`);
      }
      const spec = buildSpec(architecture as Architecture, {
        inputSize: flags.size,
        alpha: flags.alpha,
        head: { classes: flags.classes },
      });
      const network = await Network.create(spec);
      const tensors = await network.exportTensors();
      for (const t of tensors) process.stdout.write(`${t.name.padEnd(40)} [${t.shape.join(', ')}]\n`);
      process.stdout.write(
        `${network.spec.name}: ${network.spec.parameterCount.toLocaleString('en')} parameters\n`,
      );
    });
}
