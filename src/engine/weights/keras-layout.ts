/**
 * Maps Keras weight names and layouts onto the engine's tensors. Keras stores a convolution
 * kernel as [kh, kw, in, out], a depthwise kernel as [kh, kw, channels, multiplier] and a dense
 * kernel as [in, out]; the engine, as PyTorch, as [out, in/groups, kh, kw] and [out, in].
 */
import { EngineInputError } from '../../errors.js';
import type { NamedTensor } from '../network.js';

export type KerasRole =
  'kernel' | 'depthwise_kernel' | 'bias' | 'gamma' | 'beta' | 'moving_mean' | 'moving_variance';

const ROLE_TO_TENSOR: Record<KerasRole, string> = {
  kernel: 'weight',
  depthwise_kernel: 'weight',
  bias: 'bias',
  gamma: 'weight',
  beta: 'bias',
  moving_mean: 'running_mean',
  moving_variance: 'running_var',
};

/**
 * Reads the layer and role of a Keras weight name in any of its spellings: 'conv1/kernel',
 * 'conv1/kernel:0', 'block1_conv1/block1_conv1/kernel:0' (Keras 2 HDF5) and
 * 'block1_conv1_W_1:0' / 'block1_conv1_b_1:0' (Keras 1, as in the original VGG16 file).
 */
export function parseKerasWeightName(name: string): { layer: string; role: KerasRole } | undefined {
  const parts = name.replace(/:\d+$/, '').split('/');
  const last = parts[parts.length - 1] ?? '';
  const legacy = /^(.*)_([Wb])(?:_\d+)?$/.exec(last);
  if (legacy?.[1]) return { layer: legacy[1], role: legacy[2] === 'W' ? 'kernel' : 'bias' };
  if (!(last in ROLE_TO_TENSOR) || parts.length < 2) return undefined;
  return { layer: parts[parts.length - 2] ?? '', role: last as KerasRole };
}

export function engineTensorName(layer: string, role: KerasRole): string {
  return `${layer}.${ROLE_TO_TENSOR[role]}`;
}

function product(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The engine's shape for a Keras weight of the given role and shape. */
export function engineShape(role: KerasRole, shape: readonly number[]): number[] {
  const [a = 0, b = 0, c = 0, d = 0] = shape;
  if (role === 'kernel' && shape.length === 4) return [d, c, a, b];
  if (role === 'depthwise_kernel' && shape.length === 4) return [c * d, 1, a, b];
  if (role === 'kernel' && shape.length === 2) return [b, a];
  return [...shape];
}

/**
 * Converts one Keras weight to the engine's layout. `targetShape` (the engine tensor's shape)
 * lets a 1x1 convolution kernel load into a dense layer, as Keras MobileNet's conv_preds.
 */
export function kerasToEngine(
  layer: string,
  role: KerasRole,
  shape: readonly number[],
  data: Float32Array,
  targetShape?: readonly number[],
): NamedTensor {
  if (data.length !== product(shape)) {
    throw new EngineInputError(
      `Keras weight ${layer}/${role} has ${data.length} values for shape [${shape.join(',')}]`,
    );
  }
  const name = engineTensorName(layer, role);
  if (
    role === 'kernel' &&
    shape.length === 4 &&
    targetShape?.length === 2 &&
    shape[0] === 1 &&
    shape[1] === 1
  ) {
    return kerasToEngine(layer, role, [shape[2] ?? 0, shape[3] ?? 0], data);
  }
  const out = new Float32Array(data.length);
  if (role === 'kernel' && shape.length === 4) {
    const [kh = 0, kw = 0, cin = 0, cout = 0] = shape;
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let i = 0; i < cin; i++)
          for (let o = 0; o < cout; o++)
            out[((o * cin + i) * kh + y) * kw + x] = data[((y * kw + x) * cin + i) * cout + o] ?? 0;
  } else if (role === 'depthwise_kernel' && shape.length === 4) {
    const [kh = 0, kw = 0, channels = 0, multiplier = 0] = shape;
    for (let y = 0; y < kh; y++)
      for (let x = 0; x < kw; x++)
        for (let c = 0; c < channels; c++)
          for (let m = 0; m < multiplier; m++)
            out[((c * multiplier + m) * kh + y) * kw + x] =
              data[((y * kw + x) * channels + c) * multiplier + m] ?? 0;
  } else if (role === 'kernel' && shape.length === 2) {
    const [cin = 0, cout = 0] = shape;
    for (let i = 0; i < cin; i++) for (let o = 0; o < cout; o++) out[o * cin + i] = data[i * cout + o] ?? 0;
  } else {
    out.set(data);
  }
  return { name, shape: engineShape(role, shape), data: out };
}
