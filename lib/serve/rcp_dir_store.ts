/**
 * A stand-in store until lib/fleet/store.ts lands: a directory of `<id>.rcp` files, one version
 * per id (the file's content hash); publish replaces the file atomically.
 */
import { createHash } from 'node:crypto';
import { readFile, readdir, rename, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';

import { Ensemble } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';
import type { ServeStore, ServeStoredVersion } from './store.js';

const ID = /^[A-Za-z0-9._-]{1,128}$/;

export class RcpDirectoryStore implements ServeStore {
  readonly #dir: string;
  readonly #cache = new Map<string, { mtimeMs: number; size: number; entry: ServeStoredVersion }>();
  constructor(dir: string) {
    this.#dir = dir;
  }

  async list() {
    const names = (await readdir(this.#dir)).filter((n) => n.endsWith('.rcp') && ID.test(n.slice(0, -4))).sort();
    const out = [];
    for (const n of names) {
      const current = await this.current(n.slice(0, -4));
      out.push({ id: current.id, current, versions: [current] });
    }
    return out;
  }

  async current(id: string): Promise<ServeStoredVersion> {
    const file = this.#file(id);
    const s = await stat(file).catch(() => null);
    if (!s?.isFile()) throw new ReconpatchError('ERR_MODEL_NOT_FOUND' as never, `no model '${id}' in the store`);
    const hit = this.#cache.get(id);
    if (hit && hit.mtimeMs === s.mtimeMs && hit.size === s.size) return hit.entry;
    const bytes = await readFile(file);
    const entry: ServeStoredVersion = {
      id, version: createHash('sha256').update(bytes).digest('hex').slice(0, 12),
      kind: (await Ensemble.isEnsembleFile(file)) ? 'ensemble' : 'engine', published: s.mtime.toISOString(),
    };
    this.#cache.set(id, { mtimeMs: s.mtimeMs, size: s.size, entry });
    return entry;
  }

  async read(id: string, version?: string) {
    const entry = await this.current(id);
    if (version !== undefined && version !== entry.version) throw new ReconpatchError('ERR_MODEL_NOT_FOUND' as never, `model '${id}' has no version '${version}' any more`);
    return { entry, bytes: await readFile(this.#file(id)) };
  }

  async publish(model: Uint8Array, options: { id?: string } = {}): Promise<ServeStoredVersion> {
    const id = options.id;
    if (!id || !ID.test(id)) throw new ReconpatchError('ERR_INVALID_OPTION', 'publish needs an id: letters, digits, ., _, -');
    const tmp = `${this.#file(id)}.tmp-${process.pid}`;
    await writeFile(tmp, model);
    await rename(tmp, this.#file(id));
    return this.current(id);
  }

  #file(id: string): string {
    if (!ID.test(id)) throw new ReconpatchError('ERR_MODEL_NOT_FOUND' as never, `no model '${id}' in the store`);
    return path.join(this.#dir, `${id}.rcp`);
  }
}
