/**
 * Multinomial logistic regression with L2 penalty on standardised features: the head that a
 * frozen-feature recipe fits in seconds. Full-batch Adam on the convex loss, deterministic, with
 * optional per-sample weights (class balance). The fitted model folds its standardisation into
 * one linear layer, so the package holds a plain `linear` layer on the backbone's features.
 */
import { ConfigError } from '../errors.js';

export interface LogisticOptions {
  /** L2 penalty on the weights of the standardised features (the bias is not penalised). */
  l2: number;
  iterations?: number;
  learningRate?: number;
  /** Per-sample weights, e.g. inverse class frequency; 1 when absent. */
  sampleWeights?: Float64Array;
}

/** Scores = features · weight[c] + bias[c], on raw (not standardised) features. */
export interface LinearModel {
  classes: number;
  dims: number;
  /** classes x dims, row-major. */
  weight: Float64Array;
  bias: Float64Array;
}

function standardiser(
  x: Float64Array,
  rows: number,
  dims: number,
): { mean: Float64Array; std: Float64Array } {
  const mean = new Float64Array(dims);
  const std = new Float64Array(dims);
  for (let r = 0; r < rows; r++)
    for (let d = 0; d < dims; d++) mean[d] = (mean[d] ?? 0) + (x[r * dims + d] ?? 0) / rows;
  for (let r = 0; r < rows; r++)
    for (let d = 0; d < dims; d++)
      std[d] = (std[d] ?? 0) + ((x[r * dims + d] ?? 0) - (mean[d] ?? 0)) ** 2 / rows;
  for (let d = 0; d < dims; d++) std[d] = Math.sqrt(std[d] ?? 0) + 1e-6;
  return { mean, std };
}

export function fitLogistic(
  x: Float64Array,
  labels: Int32Array,
  classes: number,
  options: LogisticOptions,
): LinearModel {
  const rows = labels.length;
  if (rows === 0 || x.length % rows !== 0)
    throw new ConfigError('logistic regression needs one feature row per label');
  const dims = x.length / rows;
  if (!(options.l2 >= 0)) throw new ConfigError('the L2 penalty must be 0 or more');
  const { mean, std } = standardiser(x, rows, dims);
  const standard = new Float64Array(x.length);
  for (let r = 0; r < rows; r++)
    for (let d = 0; d < dims; d++)
      standard[r * dims + d] = ((x[r * dims + d] ?? 0) - (mean[d] ?? 0)) / (std[d] ?? 0);
  // With more features than samples, the L2-optimal weights lie in the span of the samples
  // (representer theorem): solve in that basis (rows x rows, exactly the same problem) and map back.
  const basis = dims > rows ? orthonormalRowBasis(standard, rows, dims) : null;
  const inner = basis ? basis.coordinates : standard;
  const fitted = fitStandardised(inner, labels, classes, basis ? rows : dims, options);
  const theta = basis ? fromBasis(fitted, basis.q, classes, rows, dims) : fitted;
  // Fold the standardisation in: w·(x - mean)/std + b = (w/std)·x + (b - Σ w·mean/std).
  const weight = new Float64Array(classes * dims);
  const bias = new Float64Array(classes);
  for (let c = 0; c < classes; c++) {
    let b = theta[classes * dims + c] ?? 0;
    for (let d = 0; d < dims; d++) {
      const w = (theta[c * dims + d] ?? 0) / (std[d] ?? 0);
      weight[c * dims + d] = w;
      b -= w * (mean[d] ?? 0);
    }
    bias[c] = b;
  }
  return { classes, dims, weight, bias };
}

/**
 * Modified Gram-Schmidt on the rows: q (rows x dims) orthonormal, and each row's coordinates in
 * that basis (rows x rows), so that row r = Σ_k coordinates[r][k] · q[k].
 */
function orthonormalRowBasis(
  z: Float64Array,
  rows: number,
  dims: number,
): { q: Float64Array; coordinates: Float64Array } {
  const q = new Float64Array(rows * dims);
  const coordinates = new Float64Array(rows * rows);
  for (let r = 0; r < rows; r++) {
    const v = z.slice(r * dims, (r + 1) * dims);
    for (let k = 0; k < r; k++) {
      let dot = 0;
      for (let d = 0; d < dims; d++) dot += (v[d] ?? 0) * (q[k * dims + d] ?? 0);
      coordinates[r * rows + k] = dot;
      for (let d = 0; d < dims; d++) v[d] = (v[d] ?? 0) - dot * (q[k * dims + d] ?? 0);
    }
    let norm = 0;
    for (let d = 0; d < dims; d++) norm += (v[d] ?? 0) ** 2;
    norm = Math.sqrt(norm);
    coordinates[r * rows + r] = norm;
    // A row that adds no new direction keeps a zero basis vector: it contributes nothing.
    if (norm > 1e-9) for (let d = 0; d < dims; d++) q[r * dims + d] = (v[d] ?? 0) / norm;
  }
  return { q, coordinates };
}

/** Weights over the basis (classes x rows, then biases) back to weights over the features. */
function fromBasis(
  theta: Float64Array,
  q: Float64Array,
  classes: number,
  rows: number,
  dims: number,
): Float64Array {
  const out = new Float64Array(classes * dims + classes);
  for (let c = 0; c < classes; c++)
    for (let k = 0; k < rows; k++) {
      const a = theta[c * rows + k] ?? 0;
      if (a !== 0)
        for (let d = 0; d < dims; d++)
          out[c * dims + d] = (out[c * dims + d] ?? 0) + a * (q[k * dims + d] ?? 0);
    }
  for (let c = 0; c < classes; c++) out[classes * dims + c] = theta[classes * rows + c] ?? 0;
  return out;
}

/** Adam on the mean weighted cross-entropy plus l2/2 ||W||²: weights (classes x dims), then biases. */
function fitStandardised(
  z: Float64Array,
  labels: Int32Array,
  classes: number,
  dims: number,
  options: LogisticOptions,
): Float64Array {
  const rows = labels.length;
  const sw = options.sampleWeights ?? new Float64Array(rows).fill(1);
  const total = sw.reduce((a, b) => a + b, 0);
  const params = classes * dims + classes;
  const theta = new Float64Array(params);
  const grad = new Float64Array(params);
  const m = new Float64Array(params);
  const v = new Float64Array(params);
  const iterations = options.iterations ?? 400;
  const lr = options.learningRate ?? 0.05;
  const scores = new Float64Array(classes);
  for (let t = 1; t <= iterations; t++) {
    grad.fill(0);
    for (let r = 0; r < rows; r++) {
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let s = theta[classes * dims + c] ?? 0;
        for (let d = 0; d < dims; d++) s += (theta[c * dims + d] ?? 0) * (z[r * dims + d] ?? 0);
        scores[c] = s;
        if (s > max) max = s;
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += scores[c] = Math.exp((scores[c] ?? 0) - max);
      const w = (sw[r] ?? 0) / total;
      for (let c = 0; c < classes; c++) {
        const g = w * ((scores[c] ?? 0) / sum - (labels[r] === c ? 1 : 0));
        grad[classes * dims + c] = (grad[classes * dims + c] ?? 0) + g;
        for (let d = 0; d < dims; d++)
          grad[c * dims + d] = (grad[c * dims + d] ?? 0) + g * (z[r * dims + d] ?? 0);
      }
    }
    for (let i = 0; i < classes * dims; i++) grad[i] = (grad[i] ?? 0) + options.l2 * (theta[i] ?? 0);
    for (let i = 0; i < params; i++) {
      m[i] = 0.9 * (m[i] ?? 0) + 0.1 * (grad[i] ?? 0);
      v[i] = 0.999 * (v[i] ?? 0) + 0.001 * (grad[i] ?? 0) ** 2;
      const mh = (m[i] ?? 0) / (1 - 0.9 ** t);
      const vh = (v[i] ?? 0) / (1 - 0.999 ** t);
      theta[i] = (theta[i] ?? 0) - (lr * mh) / (Math.sqrt(vh) + 1e-8);
    }
  }
  return theta;
}

/** Class scores (logits) of each row. */
export function linearScores(model: LinearModel, x: Float64Array | Float32Array): Float64Array {
  const rows = x.length / model.dims;
  const out = new Float64Array(rows * model.classes);
  for (let r = 0; r < rows; r++)
    for (let c = 0; c < model.classes; c++) {
      let s = model.bias[c] ?? 0;
      for (let d = 0; d < model.dims; d++)
        s += (model.weight[c * model.dims + d] ?? 0) * (x[r * model.dims + d] ?? 0);
      out[r * model.classes + c] = s;
    }
  return out;
}
