/**
 * Configuration files (JSON or YAML): every command option can live in one, under the option's
 * camelCase name; options given on the command line win. Unknown keys are errors, not silence.
 */
import { readFileSync } from 'node:fs';

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
