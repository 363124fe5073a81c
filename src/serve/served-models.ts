/**
 * The model packages a server holds: several names, several versions of each, one version of
 * each name active (the champion; the others are challengers or earlier champions to roll back
 * to). Each package given to `serve --model` is copied into the server's registry
 * (`serve/models/NAME@VERSION`), so retraining a name in the workspace, which writes its package
 * anew, never takes away a version that answered cases; every registered version is loaded.
 * Which version is active is the newest promotion in the database, so the servers of a
 * deployment agree, and a promotion (or a rollback) on one is seen by all at their next request.
 */
import { cpSync, existsSync, readdirSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';

import { ConfigError, PathotypeError } from '../errors.js';
import { LIMITS } from '../limits.js';
import { readManifest, type ModelManifest } from '../model/package.js';
import { Predictor, type PredictorOptions } from '../predict/predictor.js';
import type { Promotion } from '../store/model-versions.js';
import type { ServerStore } from '../store/open.js';
import { ensureDir } from '../workspace.js';

export interface ServedModel {
  /** name@version: what records, jobs and the API call it. */
  id: string;
  name: string;
  version: number;
  dir: string;
  predictor: Predictor;
}

/** name@version: what records, jobs and the API call a model. */
export function modelIdOf(manifest: Pick<ModelManifest, 'name' | 'version'>): string {
  return `${manifest.name}@${manifest.version}`;
}

const REGISTERED = /^([A-Za-z0-9._-]+)@(\d+)$/;

/** Copies a package into the registry once; a different package claiming the same name@version is refused. */
function register(registry: string, dir: string): string {
  const manifest = readManifest(dir);
  const id = modelIdOf(manifest);
  const target = path.join(registry, id);
  if (existsSync(target)) {
    if (readManifest(target).createdAt !== manifest.createdAt)
      throw new ConfigError(
        `${dir} is ${id}, but the server holds another package of that name and version (made ${readManifest(target).createdAt}): train it under another name, or serve the one it holds`,
      );
    return id;
  }
  const staging = `${target}.partial-${process.pid}`;
  rmSync(staging, { recursive: true, force: true });
  cpSync(dir, staging, { recursive: true });
  try {
    renameSync(staging, target);
  } catch (error) {
    // Another server of the deployment registered it at the same moment.
    rmSync(staging, { recursive: true, force: true });
    if (!existsSync(target)) throw error;
  }
  return id;
}

/** The registered versions, newest first; beyond LIMITS.servedPackages the oldest not named are left out. */
function registered(registry: string, keep: ReadonlySet<string>): { id: string; dir: string }[] {
  const entries = readdirSync(registry)
    .map((name) => REGISTERED.exec(name))
    .filter((m): m is RegExpExecArray => m !== null && existsSync(path.join(registry, m[0], 'model.json')))
    .map((m) => ({ id: m[0], version: Number(m[2]), dir: path.join(registry, m[0]) }))
    .sort((a, b) => b.version - a.version);
  const kept = entries.filter((e) => keep.has(e.id));
  for (const e of entries) if (kept.length < LIMITS.servedPackages && !kept.includes(e)) kept.push(e);
  return kept;
}

export class ServedModels {
  readonly #byId = new Map<string, ServedModel>();
  #active = new Map<string, string>();
  /** The name uploads go to unless they name another: the first package given. */
  readonly defaultName: string;
  readonly #store: ServerStore;

  private constructor(store: ServerStore, defaultName: string) {
    this.#store = store;
    this.defaultName = defaultName;
  }

  /**
   * Registers the given packages, loads every registered version, and makes the first given
   * version of a name active when no version of it was promoted before.
   */
  static async open(
    given: readonly string[],
    registryDir: string,
    store: ServerStore,
    options: PredictorOptions,
  ): Promise<ServedModels> {
    if (given.length === 0) throw new ConfigError('serve needs at least one model package (--model)');
    const registry = ensureDir(registryDir);
    const givenIds = given.map((dir) => register(registry, dir));
    const promoted = await store.models.active();
    const keep = new Set([...givenIds, ...[...promoted.values()].map((p) => p.modelId)]);
    const first = givenIds[0] ?? '';
    const models = new ServedModels(store, REGISTERED.exec(first)?.[1] ?? first);
    try {
      for (const { id, dir } of registered(registry, keep)) {
        const predictor = await Predictor.load(dir, options);
        const { name, version } = predictor.manifest;
        models.#byId.set(id, { id, name, version, dir, predictor });
      }
      for (const id of givenIds) {
        const name = models.#byId.get(id)?.name ?? '';
        if (!promoted.has(name)) {
          const first = await store.models.promote({
            name,
            modelId: id,
            previous: null,
            actor: 'serve',
            comparisonId: null,
          });
          promoted.set(name, first);
        }
      }
    } catch (error) {
      await models.close();
      throw error;
    }
    models.#setActive(promoted);
    return models;
  }

  #setActive(promotions: ReadonlyMap<string, Promotion>): void {
    const active = new Map<string, string>();
    for (const [name, promotion] of promotions)
      if (this.#byId.has(promotion.modelId)) active.set(name, promotion.modelId);
    // A name whose promoted version this server does not hold answers with its newest held one.
    for (const model of this.all()) if (!active.has(model.name)) active.set(model.name, model.id);
    this.#active = active;
  }

  /** Reads which version of each name is active (another server may have promoted one). */
  async refresh(): Promise<void> {
    this.#setActive(await this.#store.models.active());
  }

  /** The active version of a name (the default name's when none is given). */
  active(name = this.defaultName): ServedModel {
    const id = this.#active.get(name);
    const model = id ? this.#byId.get(id) : undefined;
    if (!model) throw new PathotypeError('ERR_NOT_FOUND', `this server holds no model named ${name}`);
    return model;
  }

  isActive(id: string): boolean {
    const model = this.#byId.get(id);
    return model !== undefined && this.#active.get(model.name) === id;
  }

  get(id: string): ServedModel | undefined {
    return this.#byId.get(id);
  }

  /** Every version held, by name, newest first. */
  all(): ServedModel[] {
    return [...this.#byId.values()].sort((a, b) => a.name.localeCompare(b.name) || b.version - a.version);
  }

  names(): string[] {
    return [...new Set(this.all().map((m) => m.name))];
  }

  /** The active version of every name, the default name's first: what an upload may be sent to. */
  choices(): ServedModel[] {
    return [this.defaultName, ...this.names().filter((n) => n !== this.defaultName)].map((n) =>
      this.active(n),
    );
  }

  async close(): Promise<void> {
    for (const model of this.#byId.values()) await model.predictor.close();
  }
}
