/**
 * One training process for `bench busy`: MobileNetV2 (alpha 0.35) on 96x96 synthetic patches,
 * batches of 32, for the given seconds after a short warm-up; prints one JSON line. Started
 * with its wait policy in the environment, which the engine applies before libtorch loads.
 */
import { engineWaitPolicy } from '../engine/native.js';
import { manualSeed, Network } from '../engine/network.js';
import { makePatternSet, sliceBatch } from '../engine/synthetic.js';
import { mobilenetV2 } from '../engine/zoo.js';

const seconds = Number(process.argv[2] ?? 20);
const size = 96;
const batch = 32;
manualSeed(1);
const network = await Network.create(mobilenetV2({ inputSize: size, alpha: 0.35, head: { classes: 3 } }));
await network.configureOptimizer({ type: 'adam', learningRate: 1e-4 });
const set = makePatternSet(batch * 4, size);
const step = async (k: number): Promise<void> => {
  const { images, labels } = sliceBatch(set, (k % 4) * batch, (k % 4) * batch + batch);
  await network.trainStep(images, labels);
};
for (let k = 0; k < 3; k++) await step(k);
const cpuBefore = process.cpuUsage();
const started = performance.now();
let steps = 0;
while ((performance.now() - started) / 1000 < seconds) await step(steps++);
const elapsed = (performance.now() - started) / 1000;
const cpu = process.cpuUsage(cpuBefore);
process.stdout.write(
  `${JSON.stringify({
    policy: engineWaitPolicy(),
    patches: steps * batch,
    seconds: elapsed,
    patchesPerSecond: (steps * batch) / elapsed,
    cpuSeconds: (cpu.user + cpu.system) / 1e6,
  })}\n`,
);
