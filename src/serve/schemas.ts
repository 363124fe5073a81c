/**
 * The server's JSON schemas, written once: the error shape, a prediction as the API shows it, and
 * the parameters routes share. The type provider derives the handlers' request types from them.
 */
import type { PredictionRecord } from './records.js';

export const ERROR_SCHEMA = {
  type: 'object',
  properties: {
    error: {
      type: 'object',
      properties: { code: { type: 'string' }, message: { type: 'string' } },
      required: ['code', 'message'],
    },
  },
  required: ['error'],
} as const;

export const NUMBER_MAP = { type: 'object', additionalProperties: { type: 'number' } } as const;

export const PREDICTION_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    createdAt: { type: 'string' },
    fileName: { type: 'string' },
    sha256: { type: 'string' },
    bytes: { type: 'integer' },
    width: { type: 'integer' },
    height: { type: 'integer' },
    model: { type: 'object', properties: { id: { type: 'string' }, version: { type: 'integer' } } },
    status: {
      enum: ['answered', 'uncertain'],
      description: "'uncertain': below the model's calibrated threshold; refer to a pathologist",
    },
    predicted: { type: 'string', description: 'the most likely subtype (also when uncertain)' },
    confidence: { type: 'number', description: 'calibrated probability of the predicted subtype' },
    probabilities: NUMBER_MAP,
    threshold: { type: ['number', 'null'] },
    rule: { type: 'string' },
    byMajority: { type: 'string' },
    byMean: { type: 'string' },
    voteShares: NUMBER_MAP,
    meanProbabilities: NUMBER_MAP,
    patches: { type: 'integer' },
    scale: { type: ['number', 'null'] },
    grid: {
      type: 'object',
      properties: {
        cols: { type: 'integer' },
        rows: { type: 'integer' },
        patchSize: { type: 'integer' },
        stride: { type: 'integer' },
        width: { type: 'integer' },
        height: { type: 'integer' },
        cells: {
          type: 'array',
          description: '[col, row, class index, confidence] per patch',
          items: { type: 'array', items: { type: 'number' } },
        },
      },
    },
    timings: {
      type: 'object',
      properties: {
        totalMs: { type: 'number' },
        queueMs: { type: 'number' },
        preprocessMs: { type: 'number' },
        inferenceMs: { type: 'number' },
      },
    },
    links: {
      type: 'object',
      properties: { self: { type: 'string' }, heatmap: { type: 'string' }, page: { type: 'string' } },
    },
  },
} as const;

/** Paging of the list routes, newest first. */
export const PAGE_PROPERTIES = {
  limit: { type: 'integer', minimum: 1, maximum: 200, default: 20 },
  offset: { type: 'integer', minimum: 0, default: 0 },
} as const;

export const ID_PARAMS = {
  type: 'object',
  properties: { id: { type: 'string', pattern: '^[0-9a-f-]{36}$' } },
  required: ['id'],
} as const;

export function publicPrediction(record: PredictionRecord): Record<string, unknown> {
  const r = record.result;
  return {
    id: record.id,
    createdAt: record.createdAt,
    fileName: record.fileName,
    sha256: record.sha256,
    bytes: record.bytes,
    width: record.width,
    height: record.height,
    model: { id: record.modelId, version: record.modelVersion },
    // Records made before calibration existed were all answers.
    status: r.status ?? 'answered',
    predicted: r.predicted,
    confidence: r.confidence ?? r.meanProbabilities[r.predicted] ?? 0,
    probabilities: r.probabilities ?? r.meanProbabilities,
    threshold: r.threshold ?? null,
    rule: r.rule,
    byMajority: r.byMajority,
    byMean: r.byMean,
    voteShares: r.voteShares,
    meanProbabilities: r.meanProbabilities,
    patches: r.patches,
    scale: r.scale,
    grid: r.grid,
    timings: record.timings,
    links: {
      self: `/api/v1/predictions/${record.id}`,
      heatmap: `/api/v1/predictions/${record.id}/heatmap.png`,
      page: `/cases/${record.id}`,
    },
  };
}

/** Upload routes: the body is the image (multipart or raw); the query names it and gives its scale. */
export const UPLOAD_CONSUMES = [
  'multipart/form-data',
  'image/png',
  'image/jpeg',
  'image/tiff',
  'image/webp',
  'application/octet-stream',
];

export const UPLOAD_QUERY = {
  type: 'object',
  properties: {
    filename: { type: 'string', maxLength: 255 },
    scale: {
      type: 'number',
      exclusiveMinimum: 0,
      maximum: 16,
      description: 'pixel scale relative to the original 1388x1040 release',
    },
  },
  additionalProperties: false,
} as const;
