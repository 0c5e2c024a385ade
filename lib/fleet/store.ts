/**
 * The model store: models as versioned artefacts, addressed by id, their current version resolved
 * by the store. `ModelStore` is the small interface workers and the service use; a directory is
 * its first implementation (an object store may follow behind the same verbs).
 *
 * Directory layout (every file written atomically: temporary file, fsync, rename):
 *   <dir>/<id>/versions/<version>.rcp    the model file (.rcpe for an ensemble)
 *   <dir>/<id>/versions/<version>.json   its StoredVersion record (without `file`)
 *   <dir>/<id>/head.json                 { current, history }: the current version and the
 *                                        versions in the order they were made current
 *   <dir>/.parts/<fit>/<name>            a distributed fit's scratch files (staged shards),
 *                                        dropped when the fit publishes ('.parts' is no model id)
 * A reader never sees a half-written model: head.json names a version only after its files are
 * in place. Writers of one id take a lock directory (<dir>/<id>/.lock) for the read-modify-write
 * of head.json, so two publishers cannot lose each other's history.
 */
import { mkdir, readFile, readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';

import { Engine } from '../engine/engine.js';
import { checkModelId } from '../engine/model_info.js';
import { readModelFile, writeFileAtomically } from '../engine/model_file.js';
import type { LoadOptions } from '../engine/types.js';
import { MAGIC as ENSEMBLE_MAGIC } from '../ensemble/container.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';

/** One stored version of a model. */
export interface StoredVersion {
  /** The id the store files it under (the model's own id unless published with another). */
  id: string;
  /** The model's version (`info.model.version`: its content hash with its thresholds). */
  version: string;
  /** Hex SHA-256 of what decides its scores (`info.model.hash`). */
  hash: string;
  kind: 'engine' | 'ensemble';
  /** Size of the model file. */
  bytes: number;
  /** ISO 8601 time it was published. */
  published: string;
  /** Absolute path of the model file. */
  file: string;
}

/** A model in the store: its current version and every version it holds, newest published first. */
export interface StoreModel {
  id: string;
  current: StoredVersion;
  versions: StoredVersion[];
}

/** Where models live: publish a version, find the current one, read it, roll back. */
export interface ModelStore {
  /** Adds a model file (a path or its bytes) and makes it the current version of its id. It is loaded first: a file that does not load is refused (ERR_MODEL_FILE). */
  publish(model: string | Uint8Array, options?: { id?: string }): Promise<StoredVersion>;
  /** Every model in the store, by id. */
  list(): Promise<StoreModel[]>;
  /** The current version of `id` (one small read: cheap enough to ask before every job). Throws ERR_MODEL_NOT_FOUND. */
  current(id: string): Promise<StoredVersion>;
  /** A version's record and bytes (the current one by default). Throws ERR_MODEL_NOT_FOUND. */
  read(id: string, version?: string): Promise<{ entry: StoredVersion; bytes: Buffer }>;
  /** Makes the version current before this one (or `version`) current again. Throws ERR_MODEL_NOT_FOUND, or ERR_INVALID_OPTION when there is none before. */
  rollback(id: string, version?: string): Promise<StoredVersion>;
  /** A distributed fit's scratch file (a staged shard), kept apart from the models. Throws ERR_IO. */
  writePart(fit: string, name: string, bytes: Uint8Array): Promise<void>;
  /** Throws ERR_IO when the part is not there (the fit was cancelled, or its parts dropped). */
  readPart(fit: string, name: string): Promise<Buffer>;
  /** Removes every part of one fit (nothing when there is none). */
  dropParts(fit: string): Promise<void>;
}

interface Head {
  current: string;
  /** Versions in the order they were made current (the last is `current`); a version appears once. */
  history: string[];
}

const VERSION = /^[0-9a-f]{16}$/;
const LOCK_WAIT_MS = 30_000;
/** A lock older than this was left by a writer that died (a publish holds it for milliseconds). */
const LOCK_STALE_MS = 60_000;

/** A model store in a directory (see the layout above); several processes may share it. */
export class DirectoryModelStore implements ModelStore {
  readonly dir: string;

  constructor(dir: string) {
    if (typeof dir !== 'string' || dir === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'a model store needs a directory path');
    this.dir = path.resolve(dir);
  }

  async publish(model: string | Uint8Array, options: { id?: string } = {}): Promise<StoredVersion> {
    const bytes = typeof model === 'string' ? await readModelFile(model) : toBuffer(model);
    const label = typeof model === 'string' ? `'${model}'` : 'model bytes';
    const loaded = await loadStoredModel(bytes).catch((err: unknown) => {
      throw new ReconpatchError('ERR_MODEL_FILE', `cannot publish ${label}: it does not load (${(err as Error).message})`, { cause: err });
    });
    let info: NonNullable<Engine['info']['model']>;
    try {
      const m = loaded.info.model;
      if (!m) throw new ReconpatchError('ERR_NOT_FITTED', `cannot publish ${label}: it holds no fitted model`);
      info = m;
    } finally {
      await loaded.dispose();
    }
    const id = checkModelId(options.id) ?? info.id;
    if (!id) throw new ReconpatchError('ERR_INVALID_OPTION', `${label} was written before models carried an id; publish it with an id (--id <id>)`);
    const kind = isEnsemble(bytes) ? 'ensemble' : 'engine';
    const entry: StoredVersion = { id, version: info.version, hash: info.hash, kind, bytes: bytes.length, published: new Date().toISOString(), file: this.#modelFile(id, info.version, kind) };
    await mkdir(path.join(this.dir, id, 'versions'), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      throw new ReconpatchError('ERR_IO', `cannot create the model store folder for '${id}' in '${this.dir}' (${err.code ?? String(err)}); check it is writable`, { cause: err });
    });
    return this.#locked(id, async () => {
      const head = await this.#head(id).catch(() => null);
      const known = await this.#record(id, info.version).catch(() => null);
      if (head?.current === info.version && known) return known; // publishing the current version again changes nothing
      if (!known) {
        await writeFileAtomically(entry.file, bytes);
        await writeFileAtomically(this.#recordFile(id, info.version), Buffer.from(JSON.stringify(withoutFile(entry))), 'model record');
      }
      const history = (head?.history ?? []).filter((v) => v !== info.version);
      await this.#writeHead(id, { current: info.version, history: [...history, info.version] });
      return known ?? entry;
    });
  }

  async list(): Promise<StoreModel[]> {
    const names = await readdir(this.dir).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return [];
      throw new ReconpatchError('ERR_IO', `cannot read the model store '${this.dir}' (${err.code ?? String(err)})`, { cause: err });
    });
    const models: StoreModel[] = [];
    for (const id of names.sort()) {
      if (checkIdQuietly(id) === null) continue;
      const head = await this.#head(id).catch(() => null);
      if (!head) continue; // not a model folder, or one whose first publish has not finished
      const versions = await Promise.all([...head.history].reverse().map((v) => this.#record(id, v)));
      models.push({ id, current: versions[0], versions });
    }
    return models;
  }

  async current(id: string): Promise<StoredVersion> {
    const head = await this.#head(id);
    return this.#record(id, head.current);
  }

  async read(id: string, version?: string): Promise<{ entry: StoredVersion; bytes: Buffer }> {
    const entry = version === undefined ? await this.current(id) : await this.#record(id, checkVersion(version));
    const bytes = await readModelFile(entry.file).catch((err: unknown) => {
      throw new ReconpatchError('ERR_MODEL_NOT_FOUND', `model '${id}' version ${entry.version} is listed but its file cannot be read (${(err as Error).message})`, { cause: err });
    });
    return { entry, bytes };
  }

  async rollback(id: string, version?: string): Promise<StoredVersion> {
    await this.#head(id); // ERR_MODEL_NOT_FOUND before any lock is taken
    return this.#locked(id, async () => {
      const head = await this.#head(id);
      let target: string;
      if (version === undefined) {
        const at = head.history.lastIndexOf(head.current);
        if (at < 1) throw new ReconpatchError('ERR_INVALID_OPTION', `model '${id}' has no version before ${head.current} to roll back to`);
        target = head.history[at - 1];
      } else {
        target = checkVersion(version);
      }
      const entry = await this.#record(id, target); // ERR_MODEL_NOT_FOUND for a version never published
      // The rolled-back version leaves the history, so a second rollback goes one further back.
      const history = head.history.filter((v) => v !== target && v !== head.current);
      await this.#writeHead(id, { current: target, history: [...history, target] });
      return entry;
    });
  }

  #modelFile(id: string, version: string, kind: StoredVersion['kind']): string {
    return path.join(this.dir, id, 'versions', `${version}.${kind === 'ensemble' ? 'rcpe' : 'rcp'}`);
  }

  #recordFile(id: string, version: string): string {
    return path.join(this.dir, id, 'versions', `${version}.json`);
  }

  async writePart(fit: string, name: string, bytes: Uint8Array): Promise<void> {
    const file = this.#partFile(fit, name);
    await mkdir(path.dirname(file), { recursive: true }).catch((err: NodeJS.ErrnoException) => {
      throw new ReconpatchError('ERR_IO', `cannot create the fit's scratch folder in '${this.dir}' (${err.code ?? String(err)}); check it is writable`, { cause: err });
    });
    await writeFileAtomically(file, bytes, 'staged shard');
  }

  async readPart(fit: string, name: string): Promise<Buffer> {
    return readFile(this.#partFile(fit, name)).catch((err: NodeJS.ErrnoException) => {
      throw new ReconpatchError('ERR_IO', `cannot read part '${name}' of fit '${fit}' from the store (${err.code ?? String(err)}); stage it again`, { cause: err });
    });
  }

  async dropParts(fit: string): Promise<void> {
    await rm(path.dirname(this.#partFile(fit, 'x')), { recursive: true, force: true });
  }

  #partFile(fit: string, name: string): string {
    if (checkIdQuietly(fit) === null || checkIdQuietly(name) === null)
      throw new ReconpatchError('ERR_INVALID_OPTION', `a fit id and part name are letters, digits, '.', '_' or '-', got ${JSON.stringify(fit)} / ${JSON.stringify(name)}`);
    return path.join(this.dir, '.parts', fit, name);
  }

  async #head(id: string): Promise<Head> {
    checkModelId(id);
    const file = path.join(this.dir, id, 'head.json');
    const text = await readFile(file, 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw notFound(id);
      throw new ReconpatchError('ERR_IO', `cannot read model '${id}' in the store '${this.dir}' (${err.code ?? String(err)})`, { cause: err });
    });
    const head = parseJson(text) as Partial<Head> | null;
    if (!head || typeof head.current !== 'string' || !VERSION.test(head.current) || !Array.isArray(head.history) || !head.history.every((v) => typeof v === 'string' && VERSION.test(v)))
      throw new ReconpatchError('ERR_MODEL_FILE', `the store's record of model '${id}' (head.json) is damaged; publish the model again`);
    return head as Head;
  }

  async #record(id: string, version: string): Promise<StoredVersion> {
    const text = await readFile(this.#recordFile(id, version), 'utf8').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new ReconpatchError('ERR_MODEL_NOT_FOUND', `model '${id}' has no version ${version} in the store; 'reconpatch models list --store <dir>' shows what it holds`);
      throw new ReconpatchError('ERR_IO', `cannot read model '${id}' version ${version} (${err.code ?? String(err)})`, { cause: err });
    });
    const r = parseJson(text) as Omit<StoredVersion, 'file'> | null;
    if (!r || r.id !== id || r.version !== version || (r.kind !== 'engine' && r.kind !== 'ensemble'))
      throw new ReconpatchError('ERR_MODEL_FILE', `the store's record of model '${id}' version ${version} is damaged; publish that version again`);
    return { ...r, file: this.#modelFile(id, version, r.kind) };
  }

  async #writeHead(id: string, head: Head): Promise<void> {
    await writeFileAtomically(path.join(this.dir, id, 'head.json'), Buffer.from(JSON.stringify(head)), 'model store head');
  }

  // One writer per id at a time, across processes: mkdir is atomic. A lock left by a dead writer
  // is taken over once it is older than any publish could hold it.
  async #locked<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const lock = path.join(this.dir, id, '.lock');
    const started = Date.now();
    for (;;) {
      try {
        await mkdir(lock);
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw new ReconpatchError('ERR_IO', `cannot lock model '${id}' in the store '${this.dir}' (${(err as NodeJS.ErrnoException).code})`, { cause: err });
        const age = await stat(lock).then((s) => Date.now() - s.mtimeMs, () => 0);
        if (age > LOCK_STALE_MS) await rm(lock, { recursive: true, force: true });
        else if (Date.now() - started > LOCK_WAIT_MS) throw new ReconpatchError('ERR_IO', `model '${id}' stayed locked by another writer for ${LOCK_WAIT_MS / 1000} s; if none runs, remove '${lock}'`);
        else await new Promise((r) => setTimeout(r, 20));
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { recursive: true, force: true });
    }
  }
}

/** Loads an engine or an ensemble from the bytes of a model file (a store entry's, or any). */
export function loadStoredModel(bytes: Buffer, options: LoadOptions = {}): Promise<Engine | Ensemble> {
  return isEnsemble(bytes) ? Ensemble.loadBytes(bytes, options) : Engine.loadBytes(bytes, options);
}

function isEnsemble(bytes: Buffer): boolean {
  return bytes.length >= ENSEMBLE_MAGIC.length && bytes.subarray(0, ENSEMBLE_MAGIC.length).equals(ENSEMBLE_MAGIC);
}

function toBuffer(bytes: Uint8Array): Buffer {
  if (!(bytes instanceof Uint8Array)) throw new ReconpatchError('ERR_INVALID_OPTION', 'publish expects a model file path or its bytes (Buffer or Uint8Array)');
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function checkVersion(version: string): string {
  if (typeof version !== 'string' || !VERSION.test(version)) throw new ReconpatchError('ERR_INVALID_OPTION', `a model version is 16 hex digits (as 'reconpatch models list' shows), got ${JSON.stringify(version)}`);
  return version;
}

function checkIdQuietly(id: string): string | null {
  try {
    return checkModelId(id) ?? null;
  } catch {
    return null;
  }
}

// Messages name no server path: a service passes them on to its clients.
function notFound(id: string): ReconpatchError {
  return new ReconpatchError('ERR_MODEL_NOT_FOUND', `no model '${id}' in the store; publish it with 'reconpatch models publish <file.rcp> --store <dir> --id ${id}'`);
}

function withoutFile(entry: StoredVersion): Omit<StoredVersion, 'file'> {
  const { file: _file, ...rest } = entry;
  return rest;
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}
