import assert from 'node:assert/strict';
import path from 'node:path';
import { describe, it } from 'node:test';

import { runServeBench } from '../../src/bench/serve.js';
import { tempDir } from '../fixtures.js';
import { trainedPackage } from '../serve/model-fixture.js';

describe('pathotype bench serve', () => {
  it('loads a real server on loopback for a bounded time and reports figures', async () => {
    const fixture = await trainedPackage();
    const report = await runServeBench({
      model: fixture.modelDir,
      workspace: tempDir(),
      clients: 3,
      seconds: 2,
      instances: 1,
      image: path.join(fixture.images, 'BLOB/0.png'),
      bf16: false,
    });
    assert.ok(report.requests >= 3, `${report.requests} requests`);
    assert.equal(report.failed, 0, JSON.stringify(report.statuses));
    assert.ok(report.latencyMs.p50 > 0 && report.latencyMs.p95 >= report.latencyMs.p50);
    assert.ok(report.serverPeakRssMb > 0);
    assert.ok(report.throughputPerSecond > 0);
  });
});
