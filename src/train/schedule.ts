import type { PhaseConfig } from './config.js';

/** Learning rate at a fractional epoch of a phase: linear warm-up, then cosine, step or constant. */
export function learningRateAt(phase: PhaseConfig, epoch: number): number {
  const base = phase.learningRate;
  if (phase.warmupEpochs > 0 && epoch < phase.warmupEpochs)
    return (base * (epoch + 1e-3)) / phase.warmupEpochs;
  const after = epoch - phase.warmupEpochs;
  const span = Math.max(1e-9, phase.epochs - phase.warmupEpochs);
  switch (phase.schedule) {
    case 'constant':
      return base;
    case 'step':
      return base * phase.gamma ** Math.floor(after / phase.stepEpochs);
    case 'cosine':
      return base * (0.02 + 0.98 * 0.5 * (1 + Math.cos((Math.PI * Math.min(after, span)) / span)));
  }
}
