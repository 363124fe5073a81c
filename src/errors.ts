/**
 * Errors that pathotype raises on purpose, declared once: each code with the HTTP status the
 * server answers it with and what it means. A thrown error carries a stable `code` that scripts
 * can test and a message that tells the user what to do next; the README lists the codes.
 */
export const ERROR_CODES = {
  // Requests and configuration: the caller can fix them.
  ERR_CONFIG: { status: 400, meaning: 'a configuration value or option cannot be used as written' },
  ERR_VALIDATION: { status: 400, meaning: 'a request does not match its route schema' },
  ERR_REQUEST: { status: 400, meaning: 'a malformed HTTP request' },
  ERR_NO_FILE: { status: 400, meaning: 'an upload without an image file' },
  ERR_UNAUTHORIZED: { status: 401, meaning: 'sign in, or send a valid API key (Authorization: Bearer KEY)' },
  ERR_LOGIN: { status: 401, meaning: 'wrong user name or password' },
  ERR_FORBIDDEN: { status: 403, meaning: "the user's or key's role does not allow this" },
  ERR_CSRF: { status: 403, meaning: 'a cross-site request, or one without a valid CSRF token' },
  ERR_LOCKED: {
    status: 429,
    meaning: 'too many failed sign-ins for this name from this address: wait, or ask an administrator',
  },
  ERR_RATE_LIMITED: { status: 429, meaning: 'too many requests from this client: retry later' },
  ERR_NOT_FOUND: { status: 404, meaning: 'no such route, prediction, slide job, model or file' },
  ERR_NOT_READY: { status: 409, meaning: 'the slide job has not finished: poll its status' },
  ERR_TOO_LARGE: { status: 413, meaning: 'the upload is larger than the server accepts' },
  ERR_TOO_MUCH_WORK: {
    status: 413,
    meaning:
      'the input implies more work than the server allows (pixels at the model scale, patches, tiles, a Deep Zoom read)',
  },
  ERR_UNSUPPORTED_MEDIA: { status: 415, meaning: 'a request body of a type this route does not take' },
  ERR_HEADERS_TOO_LARGE: { status: 431, meaning: "the request's headers are larger than the server reads" },
  ERR_TIMEOUT: { status: 408, meaning: 'the request did not arrive in time' },
  ERR_CANCELLED: { status: 409, meaning: 'the slide job was cancelled' },
  ERR_NOT_COMPARED: {
    status: 409,
    meaning: 'a challenger is promoted only after its comparison with the active version on reviewed cases',
  },
  ERR_QUOTA: { status: 507, meaning: 'the disk quota for uploaded slides is used up' },
  // Images: readable or not, and fit for this model or not.
  ERR_IMAGE_TOO_LARGE: { status: 413, meaning: 'the image has more pixels than the limit' },
  ERR_UNSUPPORTED_IMAGE: { status: 415, meaning: 'not a TIFF, PNG, JPEG or WebP image' },
  ERR_IMAGE: { status: 422, meaning: 'a corrupt, truncated or unreadable image' },
  ERR_SCALE: { status: 422, meaning: "the image's pixel scale is unknown and the model needs one" },
  ERR_UPSAMPLING: { status: 422, meaning: "the image would have to be enlarged beyond the model's limit" },
  ERR_BACKGROUND: { status: 422, meaning: 'too little tissue: mostly empty glass' },
  ERR_NOT_HE: { status: 422, meaning: 'too little H&E-stained tissue to be a field of this kind' },
  ERR_PEN_MARK: {
    status: 422,
    meaning: 'the image is marked with pen ink (coloured or black) over too much of it',
  },
  ERR_BLURRED: { status: 422, meaning: 'the image is out of focus: its nuclei are too blurred to judge' },
  ERR_TISSUE_FOLD: { status: 422, meaning: 'the section is folded over too much of the image' },
  ERR_BUBBLE: { status: 422, meaning: 'an air bubble under the coverslip covers too much of the image' },
  ERR_NO_PATCHES: {
    status: 422,
    meaning: 'the image is smaller than one patch, or all its patches are background',
  },
  ERR_ENGINE_INPUT: { status: 422, meaning: 'a shape, type, spec or option the engine cannot use' },
  ERR_ONNX: {
    status: 422,
    meaning: 'not an ONNX model ONNX Runtime can run, or not of the shape declared for it',
  },
  ERR_SLIDE_UNSUPPORTED: { status: 415, meaning: 'not a slide format OpenSlide reads' },
  ERR_SLIDE: { status: 422, meaning: 'a damaged or truncated slide, or a region it cannot give' },
  ERR_SLIDE_TOO_LARGE: {
    status: 413,
    meaning:
      "the slide is larger than the server's budget (level-0 pixels, tiles, or an overview without a pyramid)",
  },
  ERR_SLIDE_INTERRUPTED: {
    status: 500,
    meaning: 'the slide job was interrupted more often than the retry bound',
  },
  ERR_SLIDE_READER: {
    status: 500,
    meaning: 'the slide reader (OpenSlide addon) is not built or cannot load',
  },
  // The service.
  ERR_BUSY: { status: 503, meaning: 'the inference queue is full: retry after a moment' },
  ERR_INTERNAL: { status: 500, meaning: 'an unexpected failure (logged)' },
  ERR_ABORTED: { status: 503, meaning: 'work stopped because the server is shutting down' },
  // The engine.
  ERR_ENGINE: { status: 500, meaning: 'a failure inside libtorch' },
  ERR_ENGINE_MEMORY: { status: 500, meaning: 'libtorch ran out of memory' },
  ERR_ENGINE_MISSING: { status: 500, meaning: 'the native addon is not built' },
  ERR_ENGINE_LOAD: { status: 500, meaning: 'the native addon or libtorch cannot be loaded' },
  ERR_GROUP: { status: 500, meaning: 'a data-parallel group could not form, lost a rank or timed out' },
  ERR_NONFINITE_LOSS: { status: 500, meaning: 'training diverged (a loss that is not a finite number)' },
  // Stored artefacts.
  ERR_DATABASE: { status: 503, meaning: 'the shared database cannot be reached or migrated' },
  ERR_AUDIT_BROKEN: {
    status: 500,
    meaning: "the audit's hash chain is broken: a row was changed, removed or inserted",
  },
  ERR_CATALOG: { status: 500, meaning: 'the workspace catalog is unreadable' },
  ERR_CATALOG_VERSION: { status: 500, meaning: 'the catalog was written by a newer pathotype' },
  ERR_PATCH_STORE: { status: 500, meaning: 'a patch store is missing, damaged or of another format' },
  ERR_MODEL_PACKAGE: {
    status: 500,
    meaning: 'a model package is missing, damaged, inconsistent or of another format',
  },
  ERR_WEIGHTS: { status: 500, meaning: 'a weights file is missing, truncated or does not fit the network' },
  ERR_WEIGHTS_LAYOUT: { status: 500, meaning: 'a weights package lacks the expected folders' },
  // Stages.
  ERR_IMPORT: { status: 400, meaning: 'an image collection cannot be imported' },
  ERR_MANIFEST: {
    status: 400,
    meaning: 'a slide manifest has rows that cannot be imported (each one named)',
  },
  ERR_ANNOTATIONS: {
    status: 400,
    meaning:
      "a slide's annotations are not GeoJSON regions (QuPath's export: polygons with a classification)",
  },
  ERR_PREPARE: { status: 500, meaning: 'no image could be prepared into patches' },
  ERR_TRAIN: { status: 500, meaning: 'training cannot start or continue' },
  ERR_TRAIN_STOPPED: { status: 500, meaning: 'training was stopped on request' },
  ERR_EVALUATE: { status: 500, meaning: 'a model cannot be evaluated on the given data' },
  // Downloads and archives.
  ERR_DOWNLOAD: { status: 502, meaning: 'a download failed' },
  ERR_DOWNLOAD_HTTP: { status: 502, meaning: 'the server answered a download with an HTTP error' },
  ERR_DOWNLOAD_BODY: { status: 502, meaning: 'a download sent something other than the file' },
  ERR_OFFLINE: { status: 502, meaning: 'no source could be reached: the machine is offline' },
  ERR_CHECKSUM: { status: 502, meaning: 'a downloaded file does not match its checksum' },
  ERR_ARCHIVE: { status: 422, meaning: 'a corrupt or hostile archive (traversal, links, bombs)' },
} as const satisfies Record<string, { status: number; meaning: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}

export class PathotypeError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PathotypeError';
    this.code = code;
  }

  /** The HTTP status the server answers this error with. */
  get status(): number {
    return ERROR_CODES[this.code].status;
  }
}

/** A failure inside libtorch, or an unusable engine (not built, not loadable). */
export class EngineError extends PathotypeError {
  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
    this.name = 'EngineError';
  }
}

/** Wrong input to an engine call: a shape, a dtype, a spec or an option. */
export class EngineInputError extends EngineError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_ENGINE_INPUT', message, options);
    this.name = 'EngineInputError';
  }
}

/** Invalid configuration: a value the user wrote that cannot be used as written. */
export class ConfigError extends PathotypeError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_CONFIG', message, options);
    this.name = 'ConfigError';
  }
}
