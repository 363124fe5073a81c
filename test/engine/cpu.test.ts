import assert from 'node:assert/strict';
import { availableParallelism } from 'node:os';
import { describe, it } from 'node:test';

import { applyWaitPolicy, availableCores, SHORT_SPIN_COUNT } from '../../src/cpu.js';
import { engineWaitPolicy } from '../../src/engine/native.js';
import { getThreads } from '../../src/engine/network.js';

describe('CPU policy', () => {
  it('counts the cores this process may use, never more than its affinity allows', () => {
    const cores = availableCores();
    assert.ok(cores >= 1 && cores <= availableParallelism());
  });

  it("puts a short spin in the environment by default, and leaves OpenMP's own variables to the user", () => {
    const env: NodeJS.ProcessEnv = {};
    assert.equal(applyWaitPolicy(env), 'short-spin');
    assert.equal(env.GOMP_SPINCOUNT, String(SHORT_SPIN_COUNT));
    const passive: NodeJS.ProcessEnv = { PATHOTYPE_WAIT_POLICY: 'passive' };
    assert.equal(applyWaitPolicy(passive), 'passive');
    assert.equal(passive.OMP_WAIT_POLICY, 'PASSIVE');
    const libgomp: NodeJS.ProcessEnv = { PATHOTYPE_WAIT_POLICY: 'libgomp' };
    applyWaitPolicy(libgomp);
    assert.deepEqual(libgomp, { PATHOTYPE_WAIT_POLICY: 'libgomp' });
    const user: NodeJS.ProcessEnv = { GOMP_SPINCOUNT: '5' };
    assert.match(applyWaitPolicy(user), /set by the user/);
    assert.equal(user.GOMP_SPINCOUNT, '5');
  });

  it('starts the engine with the policy applied and as many threads as usable cores', () => {
    getThreads();
    assert.ok(engineWaitPolicy());
    if (process.env.PATHOTYPE_THREADS === undefined) assert.equal(getThreads(), availableCores());
  });
});
