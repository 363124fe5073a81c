/**
 * Configuration files (JSON or YAML): every command option can live in one, under the option's
 * camelCase name; options given on the command line win. Unknown keys are errors, not silence.
 */
import { readFileSync } from 'node:fs';

import { Ajv, type ErrorObject } from 'ajv';
import YAML from 'yaml';

import { ConfigError } from './errors.js';

export function readConfigFile(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new ConfigError(`cannot read the config file ${file}: ${(cause as Error).message}`, { cause });
  }
  let parsed: unknown;
  try {
    parsed = /\.json$/i.test(file) ? JSON.parse(text) : YAML.parse(text);
  } catch (cause) {
    throw new ConfigError(
      `the config file ${file} is not valid ${/\.json$/i.test(file) ? 'JSON' : 'YAML'}: ${(cause as Error).message}`,
      { cause },
    );
  }
  if (parsed === null || parsed === undefined) return {};
  if (typeof parsed !== 'object' || Array.isArray(parsed))
    throw new ConfigError(`the config file ${file} must hold a mapping of option names to values`);
  return parsed as Record<string, unknown>;
}

/**
 * A validator for one JSON schema (ajv, as Fastify uses): it throws a ConfigError naming each
 * offending key by its path (`prepare.patchsize`), including keys the schema does not know.
 */
// The caller names the checked type once, where it keeps the validator.
// eslint-disable-next-line @typescript-eslint/no-unnecessary-type-parameters
export function schemaValidator<T>(schema: object, what: string): (input: unknown) => asserts input is T {
  const validate = ajv.compile(schema);
  return (input: unknown): asserts input is T => {
    if (!validate(input)) throw new ConfigError(`invalid ${what}: ${describeErrors(validate.errors)}`);
  };
}

const ajv = new Ajv({ allErrors: true });

function describeErrors(errors: ErrorObject[] | null | undefined): string {
  return (errors ?? [])
    .slice(0, 5)
    .map((e) => {
      const where = e.instancePath ? e.instancePath.slice(1).replaceAll('/', '.') : '';
      if (e.keyword === 'additionalProperties') {
        const key = (e.params as { additionalProperty: string }).additionalProperty;
        return `unknown key '${where ? `${where}.` : ''}${key}'`;
      }
      const allowed =
        e.keyword === 'enum'
          ? ` (${(e.params as { allowedValues: unknown[] }).allowedValues.join(', ')})`
          : '';
      return `${where || 'the config'} ${e.message ?? 'is invalid'}${allowed}`;
    })
    .join('; ');
}

/**
 * Deep merge of plain objects; arrays and scalars from `over` replace those of `base`, and so
 * does an object of another `kind` (a holdout split overridden by a k-fold one), whose fields
 * must not mix with the base variant's.
 */
export function merge<T>(base: T, over: unknown): T {
  if (over === undefined) return base;
  if (
    typeof base !== 'object' ||
    base === null ||
    Array.isArray(base) ||
    typeof over !== 'object' ||
    over === null ||
    Array.isArray(over)
  ) {
    return over as T;
  }
  const overKind = (over as { kind?: unknown }).kind;
  if (overKind !== undefined && overKind !== (base as { kind?: unknown }).kind) return over as T;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [key, value] of Object.entries(over as Record<string, unknown>))
    out[key] = merge(out[key], value);
  return out as T;
}
