/**
 * Which precision the engine computes in: bfloat16 autocast only where the CPU has native bf16
 * (AVX512-BF16 or AMX), fp32 elsewhere. On a CPU without it libtorch emulates bf16 in software,
 * 10 to 30 times slower than fp32 (measured on an AVX2 Zen 3: 0.06x training, 0.03x inference),
 * so a recipe's `bf16: auto` (the default everywhere) is decided here, once, by the machine that
 * runs it. PATHOTYPE_BF16=auto|on|off overrides every recipe and flag (tests use it to take both
 * paths on any machine).
 */
import { readFileSync } from 'node:fs';

import { ConfigError } from '../errors.js';

export type Bf16Setting = boolean | 'auto';
export type Precision = 'bf16' | 'fp32';

let native: boolean | undefined;

/** Whether this CPU computes bf16 natively (read once from /proc/cpuinfo). */
export function cpuHasNativeBf16(): boolean {
  if (native === undefined) {
    try {
      native = /\bavx512_bf16\b|\bamx_bf16\b/.test(readFileSync('/proc/cpuinfo', 'utf8'));
    } catch {
      native = false;
    }
  }
  return native;
}

function override(): Bf16Setting | undefined {
  const value = process.env.PATHOTYPE_BF16;
  if (value === undefined || value === '') return undefined;
  if (value === 'auto') return 'auto';
  if (value === 'on') return true;
  if (value === 'off') return false;
  throw new ConfigError(`PATHOTYPE_BF16 is auto, on or off (got '${value}')`);
}

/**
 * bf16 or not, for a setting: 'auto' by the CPU, true or false as asked; PATHOTYPE_BF16 wins.
 * Asking for bf16 on a CPU without it still runs, with a warning that names the cost.
 */
export function resolveBf16(
  setting: Bf16Setting = 'auto',
  warn: (message: string) => void = () => undefined,
): boolean {
  const chosen = override() ?? setting;
  if (chosen === 'auto') return cpuHasNativeBf16();
  if (chosen && !cpuHasNativeBf16())
    warn(
      'bf16 was asked for, but this CPU has no native bf16 (AVX512-BF16 or AMX): libtorch emulates it, expect it 10-30x slower than fp32 (bf16: auto chooses fp32 here)',
    );
  return chosen;
}

export function precisionOf(bf16: boolean): Precision {
  return bf16 ? 'bf16' : 'fp32';
}
