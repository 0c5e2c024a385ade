/**
 * The models a service holds, by id, with hot reload: before each score the store's current
 * version is checked (cheap); a newly published version is loaded once and takes the next
 * requests, while requests already running finish on the version they started with. The old
 * model is disposed when its last request has finished.
 */
import type { FastifyBaseLogger } from 'fastify';

import type { LoadOptions } from '../engine/types.js';
import type { Engine } from '../engine/engine.js';
import type { Ensemble } from '../ensemble/ensemble.js';
import { type ModelStore, type StoredVersion, loadStoredModel } from '../fleet/store.js';

export type ServedModel = Engine | Ensemble;

/** One loaded version, with the count of requests using it. */
interface Loaded {
  entry: StoredVersion;
  model: ServedModel;
  users: number;
  retired: boolean;
}

/** A model lent to one request: call `release()` when done with it (exactly once). */
export interface Lease {
  entry: StoredVersion;
  model: ServedModel;
  release(): void;
}

export class ModelPool {
  readonly #store: ModelStore;
  readonly #load: LoadOptions;
  readonly #log: FastifyBaseLogger;
  readonly #live = new Map<string, Loaded>();
  // One load per id and version at a time: a burst of requests after a publish loads it once.
  readonly #loading = new Map<string, Promise<Loaded>>();
  // Loads are numbered per id, so that a slow load of an older version never replaces a newer one.
  readonly #started = new Map<string, number>();
  readonly #installed = new Map<string, number>();
  #closed = false;
  /** Called when the set of loaded versions changes (metrics). */
  onChange: (loaded: { id: string; version: string }[]) => void = () => {};

  constructor(store: ModelStore, load: LoadOptions, log: FastifyBaseLogger) {
    this.#store = store;
    this.#load = load;
    this.#log = log;
  }

  /** The loaded versions (id, version), for metrics and readiness. */
  get loaded(): { id: string; version: string }[] {
    return [...this.#live.values()].map((l) => ({ id: l.entry.id, version: l.entry.version }));
  }

  /** The model now current in the store for `id`, loaded if needed. Throws the store's ERR_MODEL_NOT_FOUND. */
  async acquire(id: string): Promise<Lease> {
    const entry = await this.#store.current(id);
    let loaded = this.#live.get(id);
    if (!loaded || loaded.entry.version !== entry.version) loaded = await this.#swap(id, entry);
    loaded.users++;
    let released = false;
    return {
      entry: loaded.entry, model: loaded.model,
      release: () => {
        if (released) return;
        released = true;
        loaded.users--;
        if (loaded.retired && loaded.users === 0) this.#dispose(loaded);
      },
    };
  }

  /** Loads every model in the store (at start, so that the first request does not wait and readiness is true). */
  async preload(): Promise<void> {
    for (const m of await this.#store.list()) {
      try {
        (await this.acquire(m.id)).release();
      } catch (err) {
        this.#log.error({ err, model: m.id }, 'model failed to load');
      }
    }
  }

  /** Disposes every model once its requests have finished. */
  async close(): Promise<void> {
    this.#closed = true;
    const all = [...this.#live.values()];
    this.#live.clear();
    for (const l of all) {
      l.retired = true;
      if (l.users === 0) await this.#dispose(l);
    }
  }

  #swap(id: string, entry: StoredVersion): Promise<Loaded> {
    const key = `${id}@${entry.version}`;
    let p = this.#loading.get(key);
    if (!p) {
      const seq = (this.#started.get(id) ?? 0) + 1;
      this.#started.set(id, seq);
      p = (async () => {
        const { entry: read, bytes } = await this.#store.read(id, entry.version);
        const model = await loadStoredModel(bytes, this.#load);
        const next: Loaded = { entry: read, model, users: 0, retired: false };
        const old = this.#live.get(id);
        if (this.#closed) {
          next.retired = true; // disposed when the requests that waited for it are done
          return next;
        }
        // Overtaken by a newer version while loading: the requests that waited get the newer one.
        const newer = this.#live.get(id);
        if (newer && (this.#installed.get(id) ?? 0) > seq) {
          void this.#dispose(next);
          return newer;
        }
        this.#installed.set(id, seq);
        this.#live.set(id, next);
        this.#log.info({ model: id, version: read.version, previous: old?.entry.version ?? null }, 'model loaded');
        if (old) {
          old.retired = true;
          if (old.users === 0) void this.#dispose(old);
        }
        this.onChange(this.loaded);
        return next;
      })().finally(() => this.#loading.delete(key));
      this.#loading.set(key, p);
    }
    return p;
  }

  #dispose(l: Loaded): Promise<void> {
    return l.model.dispose().catch((err: unknown) => this.#log.warn({ err, model: l.entry.id }, 'dispose failed'));
  }
}
