/**
 * One rank of the data-parallel tests: joins the group, takes rank 0's weights, trains a few
 * steps on its half of a fixed batch, and writes its weights after each step. `die` ends the
 * process right after joining, to show that the other ranks fail instead of hanging.
 */
import { writeFileSync } from 'node:fs';

import { ProcessGroup } from '../../src/engine/distributed.js';
import { manualSeed, Network } from '../../src/engine/network.js';
import { makePatternSet, sliceBatch } from '../../src/engine/synthetic.js';
import { DDP_STEPS, ddpSpec, flatWeights } from './ddp-common.js';

const [rankArg = '0', worldArg = '2', portArg = '0', out = '', mode = 'train', timeoutArg = '20000'] =
  process.argv.slice(2);
const rank = Number(rankArg);
const worldSize = Number(worldArg);
// Each rank starts from different random weights: syncFrom must make them rank 0's.
manualSeed(1 + rank);
const network = await Network.create(ddpSpec());
await network.configureOptimizer({ type: 'sgd', learningRate: 0.05, momentum: 0.9 });
const group = await ProcessGroup.join({
  rank,
  worldSize,
  host: '127.0.0.1',
  port: Number(portArg),
  timeoutMs: Number(timeoutArg),
});
if (mode === 'die') process.exit(3);
await network.syncFrom(group, 0);
const set = makePatternSet(16, 24, 3);
const per = 16 / worldSize;
const weights: number[][] = [];
for (let step = 0; step < DDP_STEPS; step++) {
  const { images, labels } = sliceBatch(set, rank * per, (rank + 1) * per);
  await network.trainStep(images, labels, { group, batchNormEval: true });
  weights.push(await flatWeights(network));
}
writeFileSync(out, JSON.stringify(weights));
