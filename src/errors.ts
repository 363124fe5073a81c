/**
 * Errors that pathotype raises on purpose. Each carries a stable `code` that scripts can test
 * and a message that tells the user what to do next.
 */
export class PathotypeError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PathotypeError';
    this.code = code;
  }
}

/** A failure inside libtorch, or an unusable engine (not built, not loadable). */
export class EngineError extends PathotypeError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
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
