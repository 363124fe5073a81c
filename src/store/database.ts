/**
 * The one seam between the stores and a database engine: statements written once with `?`
 * placeholders, run on SQLite (embedded, one file) or PostgreSQL (shared by every server of a
 * deployment). The stores above it hold no SQL of either dialect of their own.
 */
export type Dialect = 'sqlite' | 'postgres';

export type SqlValue = string | number | null;

export interface Database {
  readonly dialect: Dialect;
  /** Rows of a SELECT, or of a statement with RETURNING. */
  query<T>(sql: string, params?: readonly SqlValue[]): Promise<T[]>;
  /** A statement without rows; the number of rows it changed. */
  run(sql: string, params?: readonly SqlValue[]): Promise<number>;
  /** The order of insertion, for a stable "newest first" among rows of one timestamp. */
  readonly insertOrder: string;
  /** LIKE that ignores case in both dialects. */
  readonly like: string;
  close(): Promise<void>;
}

/** A LIKE pattern matching `text` anywhere, with % and _ taken literally (ESCAPE '\'). */
export function containsPattern(text: string): string {
  return `%${literal(text)}%`;
}

/** A LIKE pattern matching what starts with `text`, taken literally (ESCAPE '\'). */
export function prefixPattern(text: string): string {
  return `${literal(text)}%`;
}

function literal(text: string): string {
  return text.replace(/[\\%_]/g, (c) => `\\${c}`);
}
