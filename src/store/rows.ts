/**
 * Records to rows and back, from one table of columns per record type: the same mapping for
 * inserts and reads, on either dialect (JSON as text or JSONB, flags as 0/1 or booleans).
 */
import type { SqlValue } from './database.js';

export type ColumnKind = 'text' | 'number' | 'json' | 'flag';

/** Each field of T: its column and how it is stored. */
export type Columns<T> = { readonly [K in keyof T]-?: readonly [column: string, kind: ColumnKind] };

export function columnNames<T>(columns: Columns<T>): string[] {
  return Object.values<readonly [string, ColumnKind]>(columns).map(([name]) => name);
}

export function placeholders(count: number): string {
  return Array.from({ length: count }, () => '?').join(', ');
}

export function toValues<T>(record: T, columns: Columns<T>): SqlValue[] {
  return (Object.keys(columns) as (keyof T)[]).map((field) => {
    const value = record[field] as unknown;
    const kind = columns[field][1];
    if (value === null || value === undefined) return null;
    if (kind === 'json') return JSON.stringify(value);
    if (kind === 'flag') return value ? 1 : 0;
    return value as SqlValue;
  });
}

export function fromRow<T>(row: Record<string, unknown>, columns: Columns<T>): T {
  const record: Record<string, unknown> = {};
  for (const field of Object.keys(columns) as (keyof T & string)[]) {
    const [column, kind] = columns[field];
    const value = row[column];
    if (value === null || value === undefined) record[field] = null;
    else if (kind === 'json') record[field] = typeof value === 'string' ? JSON.parse(value) : value;
    else if (kind === 'flag') record[field] = Boolean(value);
    else if (kind === 'number') record[field] = Number(value);
    else record[field] = value;
  }
  return record as T;
}

/** INSERT of every column of a record type. */
export function insertSql<T>(table: string, columns: Columns<T>): string {
  const names = columnNames(columns);
  return `INSERT INTO ${table} (${names.join(', ')}) VALUES (${placeholders(names.length)})`;
}
