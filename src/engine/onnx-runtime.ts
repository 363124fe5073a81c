/**
 * A second inference engine: ONNX Runtime (onnxruntime-node, its CPU build from the npm package).
 * It runs ONNX graphs that pathotype exports, to check them, and encoders users bring. Only the
 * CPU execution provider is used: no CUDA build is fetched or loaded.
 */
import { readFile } from 'node:fs/promises';

import * as ort from 'onnxruntime-node';

import { PathotypeError } from '../errors.js';

/** One input or output of a graph: its name, element type and shape (a string for a free axis). */
export interface OnnxValue {
  name: string;
  /** 'uint8', 'float32', ...; 'not a tensor' for a sequence or map. */
  type: string;
  shape: (number | string)[];
}

export class OnnxSession {
  readonly #session: ort.InferenceSession;

  private constructor(session: ort.InferenceSession) {
    this.#session = session;
  }

  /** Opens a graph from a file or its bytes; a file that is not an ONNX model is ERR_ONNX. */
  static async open(source: string | Uint8Array, options: { threads?: number } = {}): Promise<OnnxSession> {
    const bytes = typeof source === 'string' ? await readFile(source) : source;
    try {
      const session = await ort.InferenceSession.create(bytes, {
        executionProviders: ['cpu'],
        graphOptimizationLevel: 'all',
        ...(options.threads ? { intraOpNumThreads: options.threads, interOpNumThreads: 1 } : {}),
      });
      return new OnnxSession(session);
    } catch (cause) {
      throw new PathotypeError(
        'ERR_ONNX',
        `${typeof source === 'string' ? source : 'the graph'} is not an ONNX model ONNX Runtime can run: ${firstLine(cause)}`,
        { cause },
      );
    }
  }

  get inputs(): OnnxValue[] {
    return this.#session.inputMetadata.map(describe);
  }

  get outputs(): OnnxValue[] {
    return this.#session.outputMetadata.map(describe);
  }

  /**
   * Runs the graph's one input on a batch (`dims` its shape) and returns the named outputs (all
   * by default) as float32 arrays with their shapes.
   */
  async run(
    data: Uint8Array | Float32Array,
    dims: readonly number[],
    outputs?: readonly string[],
  ): Promise<Map<string, { data: Float32Array; dims: number[] }>> {
    const [input] = this.#session.inputNames;
    if (input === undefined || this.#session.inputNames.length !== 1)
      throw new PathotypeError(
        'ERR_ONNX',
        `the graph has ${this.#session.inputNames.length} inputs; one is needed`,
      );
    const tensor = new ort.Tensor(data instanceof Uint8Array ? 'uint8' : 'float32', data, dims);
    let results: ort.InferenceSession.ReturnType;
    try {
      results = outputs
        ? await this.#session.run({ [input]: tensor }, [...outputs])
        : await this.#session.run({ [input]: tensor });
    } catch (cause) {
      throw new PathotypeError('ERR_ONNX', `ONNX Runtime could not run the graph: ${firstLine(cause)}`, {
        cause,
      });
    } finally {
      tensor.dispose();
    }
    const out = new Map<string, { data: Float32Array; dims: number[] }>();
    for (const [name, value] of Object.entries(results)) {
      if (value.type !== 'float32')
        throw new PathotypeError(
          'ERR_ONNX',
          `the graph's output '${name}' is ${value.type}; float32 is needed`,
        );
      out.set(name, { data: (value.data as Float32Array).slice(), dims: value.dims.map(Number) });
      value.dispose();
    }
    return out;
  }

  async close(): Promise<void> {
    await this.#session.release();
  }
}

/**
 * uint8 NHWC patches ([n, h, w, c] in `shape`) as float32 NCHW, each value through `value`
 * (with its channel): what graphs exported from PyTorch take.
 */
export function nhwcToNchwFloat(
  batch: Uint8Array,
  shape: readonly [number, number, number, number],
  value: (v: number, channel: number) => number = (v) => v,
): Float32Array {
  const [n, h, w, c] = shape;
  const plane = h * w;
  const out = new Float32Array(batch.length);
  for (let i = 0; i < n; i++)
    for (let p = 0; p < plane; p++)
      for (let k = 0; k < c; k++)
        out[(i * c + k) * plane + p] = value(batch[(i * plane + p) * c + k] ?? 0, k);
  return out;
}

function describe(value: ort.InferenceSession.ValueMetadata): OnnxValue {
  if (!value.isTensor) return { name: value.name, type: 'not a tensor', shape: [] };
  return {
    name: value.name,
    type: value.type,
    shape: [...value.shape],
  };
}

function firstLine(cause: unknown): string {
  return (cause instanceof Error ? cause.message : String(cause)).split('\n')[0] ?? '';
}
