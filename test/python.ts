/**
 * Debian's Python with the modules a check against other tools needs (python3-onnx,
 * python3-opencv, python3-pil): $PATHOTYPE_PYTHON, /usr/bin/python3, or the first on PATH. The
 * test set-up installs them (scripts/test.sh); without them the tests that need them fail, saying
 * which package is missing.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { tempDir } from './fixtures.js';
import type { CliResult } from './helpers.js';

const DEBIAN_PACKAGES: Record<string, string> = {
  cv2: 'python3-opencv',
  onnx: 'python3-onnx',
  PIL: 'python3-pil',
  numpy: 'python3-numpy',
};

export function runPython(python: string, args: readonly string[], timeoutMs = 600_000): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      python,
      [...args],
      { timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 },
      (error, stdout, stderr) =>
        resolve({ stdout, stderr, code: error ? (typeof error.code === 'number' ? error.code : 1) : 0 }),
    );
  });
}

/** A Python that imports every one of `modules`; throws naming the Debian packages to install. */
export async function pythonWith(modules: readonly string[]): Promise<string> {
  const candidates = [process.env.PATHOTYPE_PYTHON, '/usr/bin/python3', 'python3'].filter(
    (c): c is string => typeof c === 'string' && c.length > 0,
  );
  for (const python of candidates) {
    const probe = await runPython(python, ['-c', `import ${modules.join(', ')}`], 60_000);
    if (probe.code === 0) return python;
  }
  throw new Error(
    `no Python here imports ${modules.join(', ')}: the test set-up installs ${modules.map((m) => DEBIAN_PACKAGES[m] ?? m).join(' ')} (apt-get install)`,
  );
}

/**
 * The graph checked by onnx.checker (full check) and run by OpenCV's dnn on the patches (uint8
 * NHWC, `shape`): its outputs by name, as OpenCV computes them.
 */
const OPENCV_RUN = `
import json, sys
import cv2, numpy as np, onnx
model, patches, n, h, w = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:6])
onnx.checker.check_model(onnx.load(model), full_check=True)
net = cv2.dnn.readNetFromONNX(model)
net.setInput(np.fromfile(patches, dtype=np.uint8).reshape(n, h, w, 3))
names = sys.argv[6:]
print(json.dumps({k: np.asarray(v, dtype=np.float64).ravel().tolist() for k, v in zip(names, net.forward(names))}))
`;

export async function openCvOutputs(
  bytes: Uint8Array,
  patches: Uint8Array,
  shape: readonly [number, number, number],
  outputs: readonly string[],
): Promise<Record<string, Float32Array>> {
  const python = await pythonWith(['cv2', 'onnx', 'numpy']);
  const dir = tempDir();
  const [model, input] = [path.join(dir, 'graph.onnx'), path.join(dir, 'patches.u8')];
  writeFileSync(model, bytes);
  writeFileSync(input, patches);
  const run = await runPython(python, ['-c', OPENCV_RUN, model, input, ...shape.map(String), ...outputs]);
  assert.equal(run.code, 0, run.stderr);
  const parsed = JSON.parse(run.stdout) as Record<string, number[]>;
  return Object.fromEntries(Object.entries(parsed).map(([k, v]) => [k, Float32Array.from(v)]));
}
