/**
 * The server's JSON schemas, written once: the error shape, a prediction, a slide job and the
 * model as the API shows them, and every route's parameters, query and body. The type provider
 * derives the handlers' request types from them.
 */
import type { ImagePrediction } from '../predict/predictor.js';
import { VERDICT_PROPERTIES } from '../predict/verdict.js';
import { atypicalityText, type Atypicality } from '../predict/atypicality.js';
import type { InputMeasures } from '../predict/image-features.js';
import type { PredictionRecord } from '../store/predictions.js';
import type { SlideJob } from '../store/slide-jobs.js';
import { withoutServerPaths } from './error-handler.js';

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

/** An input's atypicality as the API shows it (publicAtypicality). */
const ATYPICALITY_SCHEMA = {
  type: 'object',
  description: 'how unlike the training images the input is',
  properties: {
    known: {
      type: 'boolean',
      description: 'false: unknown, the model keeps no reference of its training images (older packages)',
    },
    percentile: {
      type: ['number', 'null'],
      description: "of the training images' own scores (each against the other patients' images)",
    },
    unlike: { type: 'boolean', description: 'beyond the 99th percentile: unlike the training data' },
    features: { type: ['number', 'null'], description: "the model's features' own percentile" },
    stain: {
      type: ['number', 'null'],
      description: "the haematoxylin and eosin densities' own percentile",
    },
    unit: {
      type: ['string', 'null'],
      enum: ['images', 'slides', null],
      description:
        "what the percentiles are of: the training images' scores, or (a slide-trained model's) the training slides'",
    },
    says: { type: 'string', description: "what the portal says: 'unlike the training data', ..." },
  },
} as const;

/** What an input measured before normalisation, as the drift page follows it. */
const INPUTS_SCHEMA = {
  type: ['object', 'null'],
  description: 'what the input measured before normalisation',
  properties: {
    focus: { type: 'number' },
    haematoxylin: { type: 'number', description: 'mean optical density of the tissue' },
    eosin: { type: 'number', description: 'mean optical density of the tissue' },
  },
} as const;

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
    ...VERDICT_PROPERTIES,
    scale: { type: ['number', 'null'] },
    atypicality: ATYPICALITY_SCHEMA,
    inputs: INPUTS_SCHEMA,
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
        attention: {
          type: 'array',
          description:
            "a model that pools by attention: each patch's weight in the image's answer, in the order of cells (they sum to 1)",
          items: { type: 'number' },
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

type PublicAtypicality = {
  known: boolean;
  percentile: number | null;
  unlike: boolean;
  features: number | null;
  stain: number | null;
  unit: Atypicality['unit'] | null;
  says: string;
};

function publicAtypicality(a: Atypicality | null | undefined): PublicAtypicality {
  const says = atypicalityText(a);
  if (!a)
    return { known: false, percentile: null, unlike: false, features: null, stain: null, unit: null, says };
  return { known: true, ...a, unit: a.unit ?? 'images', says };
}

/** A prediction as the API shows it: the record's verdict and grid, without who asked. */
export type PublicPrediction = Omit<ImagePrediction, 'timings' | 'atypicality' | 'inputs'> &
  Pick<
    PredictionRecord,
    'id' | 'createdAt' | 'fileName' | 'sha256' | 'bytes' | 'width' | 'height' | 'timings'
  > & {
    model: { id: string; version: number };
    links: { self: string; heatmap: string; page: string };
    atypicality: PublicAtypicality;
    inputs: InputMeasures | null;
  };

export function publicPrediction(record: PredictionRecord): PublicPrediction {
  return {
    ...record.result,
    id: record.id,
    createdAt: record.createdAt,
    fileName: record.fileName,
    sha256: record.sha256,
    bytes: record.bytes,
    width: record.width,
    height: record.height,
    model: { id: record.modelId, version: record.modelVersion },
    timings: record.timings,
    atypicality: publicAtypicality(record.result.atypicality),
    inputs: record.result.inputs ?? null,
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

/** Which model answers an upload or a slide: a name the server holds. */
const MODEL_NAME_QUERY = {
  type: 'string',
  pattern: '^[A-Za-z0-9._-]{1,100}$',
  description: "a model name the server holds (its active version answers); default: the server's first",
} as const;

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
    model: MODEL_NAME_QUERY,
  },
  additionalProperties: false,
} as const;

export const MODEL_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    name: { type: 'string' },
    version: { type: 'integer' },
    active: { type: 'boolean', description: 'the version of its name that answers (promoted by an admin)' },
    architecture: { type: 'string' },
    classes: { type: 'array', items: { type: 'string' } },
    patchSize: { type: 'integer' },
    mpp: {
      type: ['number', 'null'],
      description: 'microns per pixel of the patches (null: each image at its own)',
    },
    targetScale: {
      type: ['number', 'null'],
      description: 'the same as a scale of the 1388x1040 release (0.32 um/px)',
    },
    normalisation: { type: 'string' },
    createdAt: { type: 'string' },
    syntheticWeights: { type: 'boolean' },
    metrics: {
      type: 'object',
      additionalProperties: true,
      description: 'crossValidation: the cross-validated accuracy, with its interval',
    },
    estimate: {
      type: ['string', 'null'],
      description:
        "what the cross-validated figures estimate: 'expected on new patients', or 'split by image: not an estimate for new patients'",
    },
    calibration: {
      type: ['object', 'null'],
      properties: {
        temperature: { type: 'number' },
        threshold: { type: 'number', description: 'above 1: the model answers nothing (no image, no slide)' },
        target: { type: 'number' },
      },
    },
    reference: {
      type: ['object', 'null'],
      description:
        "the training images (or, a slide-trained model's, slides) it keeps for its inputs' atypicality; null: unknown (older packages)",
      properties: {
        images: { type: 'integer', description: 'how many: images, or slides when unit is slides' },
        patients: { type: 'integer' },
        unit: { enum: ['images', 'slides'] },
      },
    },
  },
} as const;

/** Deep Zoom tile parameters: level, and column_row with the format. */
export const TILE_PARAMS = {
  type: 'object',
  properties: {
    id: ID_PARAMS.properties.id,
    level: { type: 'integer', minimum: 0, maximum: 40 },
    tile: { type: 'string', pattern: '^[0-9]{1,6}_[0-9]{1,6}\\.(jpeg|png)$' },
  },
  required: ['id', 'level', 'tile'],
} as const;

export const SLIDE_JOB_SCHEMA = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    status: { enum: ['queued', 'running', 'done', 'failed', 'cancelled'] },
    createdAt: { type: 'string' },
    updatedAt: { type: 'string' },
    fileName: { type: 'string' },
    model: { type: 'string' },
    progress: {
      type: 'object',
      properties: { done: { type: 'integer' }, total: { type: 'integer' } },
    },
    error: {
      type: ['object', 'null'],
      properties: { code: { type: 'string' }, message: { type: 'string' } },
    },
    result: {
      type: ['object', 'null'],
      properties: VERDICT_PROPERTIES,
      description: "the slide-level answer, from its tissue tiles' vote",
    },
    slide: { type: ['object', 'null'], additionalProperties: true },
    tiling: { type: ['object', 'null'], additionalProperties: true },
    atypicality: {
      ...ATYPICALITY_SCHEMA,
      type: ['object', 'null'],
      description: 'how unlike the training slides the slide is (null until done)',
    },
    inputs: INPUTS_SCHEMA,
    links: { type: 'object', additionalProperties: { type: 'string' } },
  },
} as const;

/** A failed job's error as answers show it: its slide named as sent, no server folder in it. */
export function shownJobError(job: SlideJob): SlideJob['error'] {
  if (!job.error) return null;
  const named = job.slidePath
    ? job.error.message.replaceAll(job.slidePath, JSON.stringify(job.fileName))
    : job.error.message;
  return { code: job.error.code, message: withoutServerPaths(named) };
}

export function publicSlideJob(job: SlideJob): Record<string, unknown> & { id: string } {
  const base = `/api/v1/slides/${job.id}`;
  return {
    id: job.id,
    status: job.status,
    createdAt: job.createdAt,
    updatedAt: job.updatedAt,
    fileName: job.fileName,
    model: job.modelId,
    progress: job.progress,
    error: shownJobError(job),
    result: job.summary?.result ?? null,
    slide: job.summary ? { ...job.summary.slide, path: undefined } : null,
    tiling: job.summary?.tiling ?? null,
    atypicality: job.summary ? publicAtypicality(job.summary.atypicality) : null,
    inputs: job.summary?.inputs ?? null,
    links: {
      self: base,
      geojson: `${base}/geojson`,
      heatmap: `${base}/heatmap.png`,
      heatmapDzi: `${base}/heatmap.dzi`,
      slideDzi: `${base}/slide.dzi`,
      viewer: `/slides/${job.id}`,
    },
  };
}

/** A slide submission: multipart (not validated here: it is streamed) or JSON naming a path. */
export const SLIDE_SUBMIT_BODY = {
  content: {
    'application/json': {
      schema: {
        type: 'object',
        properties: { path: { type: 'string', minLength: 1, maxLength: 4096 } },
        required: ['path'],
        additionalProperties: false,
      },
    },
  },
} as const;

export const SLIDE_SUBMIT_QUERY = {
  type: 'object',
  properties: {
    slideMpp: { type: 'number', exclusiveMinimum: 0, maximum: 100 },
    model: MODEL_NAME_QUERY,
  },
  additionalProperties: false,
} as const;

/** A page of a list route, newest first. */
export const PAGE_QUERY = {
  type: 'object',
  properties: PAGE_PROPERTIES,
  required: ['limit', 'offset'],
  additionalProperties: false,
} as const;

export const PREDICTION_LIST_QUERY = {
  type: 'object',
  properties: { ...PAGE_PROPERTIES, q: { type: 'string', maxLength: 200 } },
  required: ['limit', 'offset'],
  additionalProperties: false,
} as const;

/** The portal's history: a page number and a search. */
export const CASES_QUERY = {
  type: 'object',
  properties: {
    page: { type: 'integer', minimum: 1, default: 1 },
    q: { type: 'string', maxLength: 200, default: '' },
  },
  required: ['page', 'q'],
  additionalProperties: false,
} as const;

export function listOf<T extends object>(items: T) {
  return {
    type: 'object',
    properties: { total: { type: 'integer' }, items: { type: 'array', items } },
  } as const;
}

/** The sign-in form (urlencoded), bounded so a huge name or password is refused unread. */
export const LOGIN_BODY = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 64 },
    password: { type: 'string', minLength: 1, maxLength: 256 },
    next: { type: 'string', maxLength: 2000 },
  },
  required: ['name', 'password'],
  additionalProperties: false,
} as const;

export const LOGIN_QUERY = {
  type: 'object',
  properties: { next: { type: 'string', maxLength: 2000 } },
  additionalProperties: false,
} as const;

export const AUDIT_QUERY = {
  type: 'object',
  properties: {
    user: { type: 'string', maxLength: 120, default: '' },
    case: { type: 'string', maxLength: 64, default: '' },
    since: { type: 'string', maxLength: 40, default: '' },
  },
  required: ['user', 'case', 'since'],
  additionalProperties: false,
} as const;
