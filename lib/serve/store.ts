/**
 * What the service needs of a model store (lib/fleet/store.ts's ModelStore has this shape), and
 * loading a stored model's bytes as an engine or an ensemble.
 */
import { Engine } from '../engine/engine.js';
import type { LoadOptions } from '../engine/types.js';
import { Ensemble } from '../ensemble/ensemble.js';
import { ReconpatchError } from '../errors.js';

/** One published version of a model. */
export interface ServeStoredVersion {
  id: string;
  version: string;
  kind: 'engine' | 'ensemble';
  published: string;
}

/** The store calls the service makes (structural: lib/fleet/store.ts's DirectoryModelStore fits). */
export interface ServeStore {
  list(): Promise<{ id: string; current: ServeStoredVersion; versions: ServeStoredVersion[] }[]>;
  /** Cheap (called before every score). Throws ReconpatchError 'ERR_MODEL_NOT_FOUND' for an unknown id. */
  current(id: string): Promise<ServeStoredVersion>;
  read(id: string, version?: string): Promise<{ entry: ServeStoredVersion; bytes: Buffer }>;
  publish(model: Uint8Array, options?: { id?: string }): Promise<ServeStoredVersion>;
}

export type ServedModel = Engine | Ensemble;

/** A stored model's bytes -> an engine or an ensemble, as the store entry says. */
export function loadModelBytes(kind: 'engine' | 'ensemble', bytes: Buffer, options: LoadOptions): Promise<ServedModel> {
  if (kind === 'ensemble') return Ensemble.loadBytes(bytes, { input: options.input, threads: options.threads });
  if (kind === 'engine') return Engine.loadBytes(bytes, options);
  throw new ReconpatchError('ERR_MODEL_FILE', `unknown stored model kind ${JSON.stringify(kind)}`);
}
