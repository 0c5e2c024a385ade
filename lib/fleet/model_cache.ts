/**
 * A worker's loaded models: an LRU of engines (or ensembles) keyed by `id@version`, filled from a
 * model store. Each job leases the current version of its model for its whole run, so a publish or
 * rollback switches versions between jobs while a job in flight finishes on the version it started
 * with; an evicted model is disposed when its last lease is released (each holds ~100 MB native).
 * A version that fails to load is reported once and the previous version loaded for that id keeps
 * serving; the failed version is tried again after `retryFailedMs`.
 */
import type { Engine } from '../engine/engine.js';
import type { LoadOptions } from '../engine/types.js';
import type { Ensemble } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';
import { type ModelStore, type StoredVersion, loadStoredModel } from './store.js';
import type { VerdictError } from './protocol.js';

/** A loaded model held for one job: `release()` it when the job is done. */
export interface Lease {
  model: Engine | Ensemble;
  entry: StoredVersion;
  /** Set when the current version failed to load and this (previous) version serves instead. */
  fallback?: { version: string; error: VerdictError };
  release(): void;
}

export interface ModelCacheOptions {
  /** Models kept loaded (LRU); at least 1. */
  capacity: number;
  /** How models are loaded (threads, input limits). */
  load?: LoadOptions;
  /** Where load failures and evictions are reported (one line each). */
  log?: (line: string) => void;
  /** A version that failed to load is not tried again for this long (ms; default 60 s). */
  retryFailedMs?: number;
}

interface Slot {
  key: string;
  entry: StoredVersion;
  model: Promise<Engine | Ensemble>;
  users: number;
  evicted: boolean;
}

export class ModelCache {
  readonly #store: ModelStore;
  readonly #options: Required<Omit<ModelCacheOptions, 'load'>> & { load: LoadOptions };
  /** Insertion order is recency: a used slot is moved to the end; the first is evicted. */
  readonly #slots = new Map<string, Slot>();
  /** The last version of each id that loaded here: the fallback when a newer one fails. */
  readonly #lastGood = new Map<string, StoredVersion>();
  readonly #failed = new Map<string, { error: VerdictError; at: number }>();
  #loads = 0;

  constructor(store: ModelStore, options: ModelCacheOptions) {
    if (!Number.isInteger(options.capacity) || options.capacity < 1)
      throw new ReconpatchError('ERR_INVALID_OPTION', `the model cache needs a capacity of at least 1, got ${options.capacity}`);
    this.#store = store;
    this.#options = { log: () => {}, retryFailedMs: 60_000, load: {}, ...options };
  }

  /** Models loaded now, and loads so far (a reload after an eviction counts again). */
  get stats(): { loaded: string[]; loads: number } {
    return { loaded: [...this.#slots.keys()], loads: this.#loads };
  }

  /**
   * The current version of `id`, loaded (or the previous one, when the current one fails to load).
   * Throws ERR_MODEL_NOT_FOUND, the store's errors, or the load error when there is nothing to fall back on.
   */
  async acquire(id: string): Promise<Lease> {
    const entry = await this.#store.current(id);
    const key = `${id}@${entry.version}`;
    const failed = this.#failed.get(key);
    if (failed && Date.now() - failed.at < this.#options.retryFailedMs) return this.#fallback(entry, failed.error);
    try {
      const lease = await this.#lease(entry);
      this.#failed.delete(key);
      this.#lastGood.set(id, entry);
      return lease;
    } catch (err) {
      if (err instanceof ReconpatchError && err.code === 'ERR_MODEL_NOT_FOUND') throw err; // removed meanwhile: nothing to report
      const error = { code: err instanceof ReconpatchError ? err.code : 'ERR_INTERNAL', message: err instanceof Error ? err.message : String(err) };
      this.#failed.set(key, { error, at: Date.now() });
      const previous = this.#lastGood.get(id);
      this.#options.log(`model ${key} failed to load [${error.code}]: ${error.message}; ${previous && previous.version !== entry.version ? `serving ${id}@${previous.version} instead` : 'no earlier version to serve'}`);
      return this.#fallback(entry, error, err);
    }
  }

  /** Disposes every model (after the worker stopped taking jobs: leases still held are disposed on release). */
  async close(): Promise<void> {
    const slots = [...this.#slots.values()];
    this.#slots.clear();
    await Promise.all(slots.map((s) => this.#evict(s)));
  }

  async #fallback(entry: StoredVersion, error: VerdictError, cause?: unknown): Promise<Lease> {
    const previous = this.#lastGood.get(entry.id);
    if (!previous || previous.version === entry.version)
      throw cause instanceof ReconpatchError ? cause : new ReconpatchError(error.code as ReconpatchError['code'], `model ${entry.id}@${entry.version} does not load here: ${error.message}`);
    const lease = await this.#lease(previous); // reloaded from the store if it was evicted meanwhile
    return { ...lease, fallback: { version: entry.version, error } };
  }

  async #lease(entry: StoredVersion): Promise<Lease> {
    const key = `${entry.id}@${entry.version}`;
    let slot = this.#slots.get(key);
    if (slot) {
      this.#slots.delete(key); // most recently used: to the end
      this.#slots.set(key, slot);
    } else {
      this.#loads++;
      const started = Date.now();
      const model = this.#store.read(entry.id, entry.version).then(async ({ bytes }) => {
        const m = await loadStoredModel(bytes, this.#options.load);
        this.#options.log(`model ${key} loaded in ${Date.now() - started} ms`);
        return m;
      });
      slot = { key, entry, model, users: 0, evicted: false };
      this.#slots.set(key, slot);
      this.#trim();
    }
    slot.users++;
    const held = slot;
    let model: Engine | Ensemble;
    try {
      model = await held.model;
    } catch (err) {
      held.users--;
      if (this.#slots.get(key) === held) this.#slots.delete(key); // not kept: the next job tries again (or falls back)
      throw err;
    }
    let released = false;
    return {
      model, entry: held.entry,
      release: () => {
        if (released) return;
        released = true;
        held.users--;
        if (held.evicted && held.users === 0) void this.#evict(held);
      },
    };
  }

  /** Evicts least recently used slots over capacity (disposed now if unused, else on their last release). */
  #trim(): void {
    while (this.#slots.size > this.#options.capacity) {
      const [key, slot] = this.#slots.entries().next().value as [string, Slot];
      this.#slots.delete(key);
      slot.evicted = true;
      this.#options.log(`model ${key} evicted (cache of ${this.#options.capacity})`);
      if (slot.users === 0) void this.#evict(slot);
    }
  }

  async #evict(slot: Slot): Promise<void> {
    slot.evicted = true;
    if (slot.users > 0) return;
    try {
      await (await slot.model).dispose();
    } catch {
      // a model that never loaded has nothing to free
    }
  }
}
