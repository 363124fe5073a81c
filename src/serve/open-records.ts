/** The server's record store from its settings: PostgreSQL for a postgres:// URL, else SQLite. */
import path from 'node:path';

import { ConfigError } from '../errors.js';
import { PgRecords } from './pg-records.js';
import { ServerRecords, type RecordStore } from './records.js';

export async function openRecords(dataDir: string, database?: string): Promise<RecordStore> {
  const uploads = path.join(dataDir, 'uploads');
  if (!database) return new ServerRecords(path.join(dataDir, 'serve.sqlite'), uploads);
  if (!/^postgres(ql)?:\/\//.test(database))
    throw new ConfigError(
      `--database takes a postgres:// URL (got '${database.replace(/:[^:@/]*@/, ':***@')}')`,
    );
  return PgRecords.open(database, uploads);
}
