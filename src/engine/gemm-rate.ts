/**
 * The machine's own limit: the rate at which libtorch multiplies large matrices here, in fp32 and
 * in bf16, on the engine's threads. Networks are measured against it (a share of it), so figures
 * from different CPUs say how well the engine uses each, not only how fast each is.
 */
import { Network } from './network.js';
import { vectorInput, type NetworkSpec } from './spec.js';

/** Side of the square GEMMs: large enough that packing and threading costs vanish. */
const SIDE = 2048;
/** GEMMs per forward pass (one linear layer each). */
const LAYERS = 4;

export interface GemmRate {
  precision: 'fp32' | 'bf16';
  /** Billions of floating-point operations a second (2 per multiply-add). */
  gflops: number;
  side: number;
}

/**
 * A forward pass of LAYERS linear layers of SIDE x SIDE on a batch of SIDE rows: SIDE^3
 * multiply-adds each, through the addon's own linear layer (oneDNN or MKL, as the networks use).
 */
function gemmSpec(): NetworkSpec {
  return {
    name: 'gemm',
    input: vectorInput(SIDE, 128, 64),
    classes: SIDE,
    layers: [
      { type: 'flatten' },
      ...Array.from({ length: LAYERS }, (_, i) => ({
        type: 'linear' as const,
        name: `gemm${i}`,
        units: SIDE,
        useBias: false,
      })),
    ],
  };
}

/** Best of `repeats` timed passes after one warm-up. */
export async function measureGemmRate(bf16: boolean, repeats = 3): Promise<GemmRate> {
  const network = await Network.create(gemmSpec());
  const batch = new Uint8Array(SIDE * SIDE).map((_, i) => (i * 131) % 251);
  await network.predict(batch, { bf16, raw: true });
  let best = Infinity;
  for (let r = 0; r < repeats; r++) {
    const started = performance.now();
    await network.predict(batch, { bf16, raw: true });
    best = Math.min(best, (performance.now() - started) / 1000);
  }
  const flops = 2 * LAYERS * SIDE ** 3;
  return { precision: bf16 ? 'bf16' : 'fp32', gflops: flops / best / 1e9, side: SIDE };
}
