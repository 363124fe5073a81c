/**
 * Data-parallel training across processes on PyTorch's c10d: a Gloo process group (the CPU
 * backend) that the ranks join through a TCPStore rendezvous served by rank 0. A step with the
 * group averages the gradients across ranks after backward and takes the batch-norm buffers from
 * rank 0 before the forward pass, as DistributedDataParallel does; `Network.syncFrom` gives every
 * rank rank 0's weights at the start. With a CUDA libtorch (`LIBTORCH=`), NCCL would take
 * Gloo's place for GPU tensors; this build is CPU-only.
 */
import { EngineError, EngineInputError } from '../errors.js';
import { loadEngine, type NativeGroup } from './native.js';

/** How long a collective (or the rendezvous) waits for a missing rank before it fails. */
export const DEFAULT_GROUP_TIMEOUT_MS = 60_000;

export interface GroupOptions {
  rank: number;
  worldSize: number;
  /** Rank 0's address: it serves the rendezvous there. */
  host: string;
  port: number;
  timeoutMs?: number;
}

export class ProcessGroup {
  readonly rank: number;
  readonly worldSize: number;
  readonly handle: NativeGroup;

  private constructor(rank: number, worldSize: number, handle: NativeGroup) {
    this.rank = rank;
    this.worldSize = worldSize;
    this.handle = handle;
  }

  /** Joins the group; resolves when every rank has joined, or fails after the timeout. */
  static async join(options: GroupOptions): Promise<ProcessGroup> {
    const { rank, worldSize, host, port } = options;
    const timeoutMs = options.timeoutMs ?? DEFAULT_GROUP_TIMEOUT_MS;
    if (!Number.isInteger(worldSize) || worldSize < 1)
      throw new EngineInputError(`the world size must be a positive integer (got ${worldSize})`);
    if (!Number.isInteger(rank) || rank < 0 || rank >= worldSize)
      throw new EngineInputError(`rank ${rank} is outside 0..${worldSize - 1}`);
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      throw new EngineInputError(`the rendezvous port must be 1-65535 (got ${port})`);
    try {
      const handle = await loadEngine().createGroup({ rank, worldSize, host, port, timeoutMs });
      return new ProcessGroup(rank, worldSize, handle);
    } catch (cause) {
      throw new EngineError(
        'ERR_GROUP',
        `rank ${rank} could not join the group at ${host}:${port}: ${(cause as Error).message}`,
        { cause },
      );
    }
  }
}
