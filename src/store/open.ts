/**
 * A server's store from its settings: one database (SQLite in the data folder, or PostgreSQL for
 * a postgres:// URL), migrated once, with every store of the server on it.
 */
import path from 'node:path';

import { ConfigError } from '../errors.js';
import type { Database } from './database.js';
import { AuditLog } from './audit.js';
import { CaseSignalStore } from './case-signals.js';
import { ModelVersions } from './model-versions.js';
import { KeyStore } from './keys.js';
import { PostgresDatabase } from './postgres.js';
import { PredictionStore } from './predictions.js';
import { ReviewStore } from './reviews.js';
import { SharedSlideQueue, type SharedQueueOptions } from './shared-slide-queue.js';
import { LocalSlideQueue, type ModelOfNewJobs, type SlideExecutor, type SlideQueue } from './slide-jobs.js';
import { Settings } from './settings.js';
import { SqliteDatabase } from './sqlite.js';
import { UserStore } from './users.js';

/** The embedded database's file in a server's data folder. */
export const SQLITE_FILE = 'serve.sqlite';

export class ServerStore {
  readonly db: Database;
  readonly predictions: PredictionStore;
  readonly keys: KeyStore;
  readonly users: UserStore;
  readonly settings: Settings;
  readonly audit: AuditLog;
  readonly reviews: ReviewStore;
  readonly signals: CaseSignalStore;
  readonly models: ModelVersions;

  constructor(db: Database, dataDir: string) {
    this.db = db;
    this.predictions = new PredictionStore(db, path.join(dataDir, 'uploads'));
    this.keys = new KeyStore(db);
    this.users = new UserStore(db);
    this.settings = new Settings(db);
    this.audit = new AuditLog(db);
    this.reviews = new ReviewStore(db);
    this.signals = new CaseSignalStore(db);
    this.models = new ModelVersions(db);
  }

  /** The slide queue on this database: run here, or shared with the deployment through pg-boss. */
  openSlideQueue(
    dir: string,
    modelId: ModelOfNewJobs,
    execute: SlideExecutor,
    options: SharedQueueOptions = {},
  ): Promise<SlideQueue> {
    if (this.db instanceof PostgresDatabase)
      return SharedSlideQueue.open(this.db, dir, modelId, execute, options);
    return Promise.resolve(new LocalSlideQueue(this.db, dir, modelId, execute));
  }

  close(): Promise<void> {
    return this.db.close();
  }
}

export async function openStore(dataDir: string, database?: string): Promise<ServerStore> {
  if (!database) return new ServerStore(await SqliteDatabase.open(path.join(dataDir, SQLITE_FILE)), dataDir);
  if (!/^postgres(ql)?:\/\//.test(database))
    throw new ConfigError(
      `--database takes a postgres:// URL (got '${database.replace(/:[^:@/]*@/, ':***@')}')`,
    );
  return new ServerStore(await PostgresDatabase.open(database), dataDir);
}
