/**
 * Training checkpoints: after each epoch, the weights, the optimizer state and the loop's state,
 * written into a fresh folder that replaces the previous one by rename. A kill -9 at any moment
 * leaves the previous or the new checkpoint whole.
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';

import type { NamedTensor } from '../engine/network.js';
import type { EpochRecord } from '../model/package.js';
import { readTensors, writeTensors } from '../model/tensors-file.js';

export interface CheckpointState {
  /** Epochs completed, over all phases. */
  epochsDone: number;
  history: EpochRecord[];
  bestValidation: number | null;
  bestEpoch: number | null;
  epochsWithoutImprovement: number;
  stopped: boolean;
  configFingerprint: string;
}

export interface Checkpoint {
  state: CheckpointState;
  weights: NamedTensor[];
  best: NamedTensor[] | null;
  optimizer: Uint8Array;
}

export function checkpointDir(runDir: string): string {
  return path.join(runDir, 'checkpoint');
}

export async function saveCheckpoint(
  runDir: string,
  checkpoint: Checkpoint,
  bestChanged: boolean,
): Promise<void> {
  const dir = checkpointDir(runDir);
  const staging = `${dir}.partial`;
  await rm(staging, { recursive: true, force: true });
  await mkdir(staging, { recursive: true });
  await writeTensors(path.join(staging, 'weights'), checkpoint.weights);
  if (checkpoint.best && bestChanged) await writeTensors(path.join(staging, 'best'), checkpoint.best);
  else if (existsSync(path.join(dir, 'best.bin'))) {
    // Unchanged best weights: carry the previous files over.
    await writeFile(path.join(staging, 'best.bin'), await readFile(path.join(dir, 'best.bin')));
    await writeFile(path.join(staging, 'best.json'), await readFile(path.join(dir, 'best.json')));
  }
  await writeFile(path.join(staging, 'optimizer.bin'), checkpoint.optimizer);
  await writeFile(path.join(staging, 'state.json'), `${JSON.stringify(checkpoint.state, null, 2)}\n`);
  const old = `${dir}.old`;
  await rm(old, { recursive: true, force: true });
  if (existsSync(dir)) await rename(dir, old);
  await rename(staging, dir);
  await rm(old, { recursive: true, force: true });
}

/** The newest whole checkpoint, or undefined. */
export async function loadCheckpoint(runDir: string): Promise<Checkpoint | undefined> {
  const dir = checkpointDir(runDir);
  // A kill between the two renames leaves only the .old folder.
  const found = [dir, `${dir}.old`].find((d) => existsSync(path.join(d, 'state.json')));
  if (!found) return undefined;
  const state = JSON.parse(readFileSync(path.join(found, 'state.json'), 'utf8')) as CheckpointState;
  return {
    state,
    weights: await readTensors(path.join(found, 'weights')),
    best: existsSync(path.join(found, 'best.bin')) ? await readTensors(path.join(found, 'best')) : null,
    optimizer: new Uint8Array(await readFile(path.join(found, 'optimizer.bin'))),
  };
}
