/**
 * How the engine uses the CPU: how many cores it may count on, and how its OpenMP threads wait.
 *
 * Cores: Node's availableParallelism() follows the affinity mask (taskset, cpusets) but not a
 * cgroup CPU quota (docker --cpus, Kubernetes limits); a quota of 2 CPUs on a 64-core host must
 * mean 2 threads, or every step waits on descheduled threads.
 *
 * Waiting: Debian's libtorch runs on libgomp, whose idle threads spin (GOMP_SPINCOUNT, 300,000
 * iterations by default) before they sleep. On a quiet machine spinning saves a wake-up between
 * parallel regions; beside another busy process it burns the cores the other threads need. The
 * policy must be in the environment before libgomp initialises, that is, before the addon loads.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

/** The cores this process may use: its affinity mask, capped by a cgroup v2 (or v1) CPU quota. */
export function availableCores(): number {
  const cores = availableParallelism();
  const quota = cgroupCpuQuota();
  return quota === null ? cores : Math.max(1, Math.min(cores, Math.floor(quota + 0.5)));
}

function cgroupCpuQuota(): number | null {
  try {
    const [max, period] = readFileSync('/sys/fs/cgroup/cpu.max', 'utf8').trim().split(/\s+/);
    if (max && max !== 'max' && Number(period) > 0) return Number(max) / Number(period);
    return null;
  } catch {
    // not cgroup v2: try v1
  }
  try {
    const quota = Number(readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_quota_us', 'utf8'));
    const period = Number(readFileSync('/sys/fs/cgroup/cpu/cpu.cfs_period_us', 'utf8'));
    return quota > 0 && period > 0 ? quota / period : null;
  } catch {
    return null;
  }
}

/**
 * 'short-spin': spin briefly (GOMP_SPINCOUNT below), then sleep: close to libgomp's speed on a
 * quiet machine, without burning a shared one. 'passive': sleep at once (OMP_WAIT_POLICY).
 * 'libgomp': leave libgomp's own default. See `pathotype bench busy` for the measurements.
 */
export const WAIT_POLICIES = ['short-spin', 'passive', 'libgomp'] as const;
export type WaitPolicy = (typeof WAIT_POLICIES)[number];

export const DEFAULT_WAIT_POLICY: WaitPolicy = 'short-spin';
export const SHORT_SPIN_COUNT = 1_000;

/**
 * Puts the wait policy (PATHOTYPE_WAIT_POLICY, else the default) into the environment, unless
 * the user set OpenMP's own variables; returns what applies. Call before the addon loads.
 */
export function applyWaitPolicy(env: NodeJS.ProcessEnv = process.env): string {
  if (env.OMP_WAIT_POLICY !== undefined || env.GOMP_SPINCOUNT !== undefined)
    return `set by the user (OMP_WAIT_POLICY=${env.OMP_WAIT_POLICY ?? ''}, GOMP_SPINCOUNT=${env.GOMP_SPINCOUNT ?? ''})`;
  const requested = env.PATHOTYPE_WAIT_POLICY ?? DEFAULT_WAIT_POLICY;
  const policy = (WAIT_POLICIES as readonly string[]).includes(requested)
    ? (requested as WaitPolicy)
    : DEFAULT_WAIT_POLICY;
  if (policy === 'short-spin') env.GOMP_SPINCOUNT = String(SHORT_SPIN_COUNT);
  if (policy === 'passive') env.OMP_WAIT_POLICY = 'PASSIVE';
  return policy;
}
