/** Parsers for CLI option values: each rejects a bad value with a message naming the option. */
import { InvalidArgumentError, type Command } from 'commander';

import { ConfigError } from '../errors.js';

export function positiveInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function nonNegativeInt(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

export function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a number above 0');
  return n;
}

export function fraction(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n < 0 || n >= 1)
    throw new InvalidArgumentError('expected a number from 0 to below 1');
  return n;
}

export function choice<T extends string>(choices: readonly T[]): (value: string) => T {
  return (value) => {
    if (!(choices as readonly string[]).includes(value))
      throw new InvalidArgumentError(`expected one of ${choices.join(', ')}`);
    return value as T;
  };
}

/**
 * Applies a config file to a command's options: each key is an option's camelCase name; a value
 * given on the command line wins; file values go through the option's own parser, so they are
 * validated exactly as typed flags are. Unknown keys are errors.
 */
export function applyConfigFile(command: Command, file: Record<string, unknown>): void {
  const options = new Map(command.options.map((o) => [o.attributeName(), o]));
  const unknown = Object.keys(file).filter((k) => !options.has(k) || k === 'config');
  if (unknown.length > 0) {
    throw new ConfigError(
      `unknown config key${unknown.length > 1 ? 's' : ''} ${unknown.map((k) => `'${k}'`).join(', ')} for '${command.name()}'; ` +
        `known: ${[...options.keys()].filter((k) => k !== 'config').join(', ')}`,
    );
  }
  for (const [key, raw] of Object.entries(file)) {
    if (command.getOptionValueSource(key) === 'cli') continue;
    const option = options.get(key);
    if (!option) continue;
    let value: unknown = raw;
    if (option.isBoolean() || option.negate) {
      if (typeof raw !== 'boolean') throw new ConfigError(`config key '${key}' must be true or false`);
    } else if (option.parseArg) {
      try {
        value = option.parseArg(String(raw), undefined as never);
      } catch (error) {
        throw new ConfigError(`config key '${key}': ${(error as Error).message}`);
      }
    }
    command.setOptionValueWithSource(key, value, 'config');
  }
}
