/**
 * One process of `bench ddp`: a network trained on synthetic patches, alone or as one rank of a
 * group; prints patches/s (the global batch, all ranks together) and the time in collectives.
 */
import { ProcessGroup } from '../engine/distributed.js';
import { manualSeed, Network, setThreads } from '../engine/network.js';
import { makePatternSet, sliceBatch } from '../engine/synthetic.js';
import { buildSpec, type Architecture } from '../engine/zoo.js';

const [
  arch = 'vgg16',
  rankArg = '0',
  worldArg = '1',
  portArg = '0',
  threadsArg = '2',
  stepsArg = '8',
  batchArg = '32',
  sizeArg = '64',
] = process.argv.slice(2);
const [rank, worldSize, port, threads, steps, batch, size] = [
  rankArg,
  worldArg,
  portArg,
  threadsArg,
  stepsArg,
  batchArg,
  sizeArg,
].map(Number) as [number, number, number, number, number, number, number];
setThreads(threads);
manualSeed(1);
const network = await Network.create(
  buildSpec(arch as Architecture, {
    inputSize: size,
    alpha: 0.35,
    head: { classes: 3, pooling: 'avg', hidden: [], dropout: 0 },
  }),
);
await network.configureOptimizer({ type: 'sgd', learningRate: 1e-3, momentum: 0.9 });
const group =
  worldSize > 1 ? await ProcessGroup.join({ rank, worldSize, host: '127.0.0.1', port }) : undefined;
if (group) await network.syncFrom(group);
const per = batch / worldSize;
const set = makePatternSet(batch, size, 5);
const { images, labels } = sliceBatch(set, rank * per, (rank + 1) * per);
const step = (): ReturnType<Network['trainStep']> =>
  network.trainStep(images, labels, group ? { group } : {});
for (let i = 0; i < 2; i++) await step();
let syncMs = 0;
const started = performance.now();
for (let i = 0; i < steps; i++) syncMs += (await step()).syncMs;
const seconds = (performance.now() - started) / 1000;
process.stdout.write(
  `${JSON.stringify({ rank, worldSize, threads, patchesPerSecond: (steps * batch) / seconds, stepMs: (seconds * 1000) / steps, syncMs: syncMs / steps })}\n`,
);
