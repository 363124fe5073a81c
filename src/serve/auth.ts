/**
 * API keys, hashed at rest, guard the routes of the context this hook is added to once any key
 * exists; the key's id is kept on the request for the audit record.
 */
import type { FastifyRequest } from 'fastify';

import { PathotypeError } from '../errors.js';
import type { KeyStore } from '../store/keys.js';

export function apiKeyHook(keys: KeyStore): (request: FastifyRequest) => Promise<void> {
  return async (request) => {
    if (!(await keys.required())) return;
    const header = request.headers.authorization ?? '';
    const alternative = request.headers['x-api-key'];
    const key = header.startsWith('Bearer ')
      ? header.slice(7).trim()
      : typeof alternative === 'string'
        ? alternative
        : undefined;
    const record = key ? await keys.verify(key) : undefined;
    if (!record)
      throw new PathotypeError('ERR_UNAUTHORIZED', 'a valid API key is required (Authorization: Bearer KEY)');
    request.keyId = record.id;
  };
}
