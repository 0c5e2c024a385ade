/**
 * Models as versioned artefacts: what a model file says about the model it holds (its id, when
 * and with what it was fitted, on which images), kept in the META JSON beside the calibration,
 * and the version every score result names. The content hash is computed natively over the
 * sections that decide scores (bank, head, options, backbone identity), so it is the same for
 * every re-save of one model; the version adds the thresholds, since they decide verdicts too.
 */
import { createHash, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';

import type { Calibration } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { packageRoot, runtimeInfo } from '../native.js';

/** The range of image sizes (pixels) a model was fitted on. */
export interface ImageSizes {
  minWidth: number;
  maxWidth: number;
  minHeight: number;
  maxHeight: number;
}

/** What the META section keeps about the model (written by every fit and update). */
export interface StoredModel {
  id: string;
  /** Hex SHA-256 of the scoring sections (native contentHash). */
  hash: string;
  /** ISO 8601 time of the fit or update that made this version. */
  created: string;
  packageVersion: string;
  /** The libtorch it was fitted with: `'<version> <cpu|cuda>'` (and the CUDA version). */
  libtorch: string;
  /** Sizes of the images the fit (and updates) saw; null when unknown. */
  imageSizes: ImageSizes | null;
}

/**
 * What a model is and where it comes from: `engine.info.model`, `ensemble.info.model`. Fields a
 * model file written before reconpatch kept them cannot tell are null (`hash` and `version` are
 * computed from the model itself, so they are never null for a fitted model).
 * @example
 * const { id, version, created, trainingSet } = engine.info.model!;
 * console.log(`${id}@${version} from ${created}, ${trainingSet.images} images`);
 */
export interface ModelInfo {
  /** The model's name: given to `fit({ modelId })`, else a UUID made by its first fit; kept by later fits and updates. Null for older files. */
  id: string | null;
  /** Hex SHA-256 of what decides its scores (bank, head, options, backbone): the same after any number of re-saves and loads. */
  hash: string;
  /** 16 hex digits naming this model with its thresholds (a new threshold is a new version); every score result carries it. */
  version: string;
  /** ISO 8601 time of the fit or update that made this version; null for older files. */
  created: string | null;
  /** The reconpatch version that fitted it; null for older files. */
  packageVersion: string | null;
  /** The libtorch it was fitted with, e.g. `'1.13.0 cpu'`; null for older files. */
  libtorch: string | null;
  /** The backbone's name (as `info.backbone`; an ensemble's members' names joined with `+`). */
  backbone: string;
  /** The images the bank was built from: how many, and the range of their sizes (null for older files). */
  trainingSet: { images: number; sizes: ImageSizes | null };
  /** The thresholds in one line (from `calibration`), or null without one. */
  calibration: { method: Calibration['method']; images: number; threshold: number; falseAlarmRate: number | null } | null;
}

/** The model that produced a result: `ScoreResult.modelId` and `modelVersion`. */
export interface ModelRef {
  id: string | null;
  version: string;
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** A `modelId` option checked (letters, digits, `.`, `_`, `-`; up to 128; usable as a file name). Throws ERR_INVALID_OPTION. */
export function checkModelId(id: unknown): string | undefined {
  if (id === undefined) return undefined;
  if (typeof id !== 'string' || !ID.test(id))
    throw new ReconpatchError('ERR_INVALID_OPTION', `modelId must be 1 to 128 letters, digits, '.', '_' or '-' (starting with a letter or digit), got ${JSON.stringify(id)}`);
  return id;
}

let provenance: { packageVersion: string; libtorch: string } | undefined;

/** The record of a fit or update committed now: `previous`'s id (or a new one) unless `id` is given. */
export function newModelRecord(hash: string, previous: StoredModel | null, id: string | undefined, sizes: ImageSizes | null): StoredModel {
  provenance ??= (() => {
    const { version } = JSON.parse(readFileSync(path.join(packageRoot, 'package.json'), 'utf8')) as { version: string };
    const { libtorch } = runtimeInfo();
    return { packageVersion: version, libtorch: `${libtorch.version} ${libtorch.variant}${libtorch.cuda ? ` ${libtorch.cuda}` : ''}` };
  })();
  return { id: id ?? previous?.id ?? randomUUID(), hash, created: new Date().toISOString(), ...provenance, imageSizes: sizes };
}

/** The union of two size ranges (an update's images join the fit's). */
export function mergeSizes(a: ImageSizes | null, b: ImageSizes | null): ImageSizes | null {
  if (!a || !b) return a ?? b;
  return { minWidth: Math.min(a.minWidth, b.minWidth), maxWidth: Math.max(a.maxWidth, b.maxWidth), minHeight: Math.min(a.minHeight, b.minHeight), maxHeight: Math.max(a.maxHeight, b.maxHeight) };
}

/** The version of a model with these thresholds: the first 16 hex digits of SHA-256 over the hash and the numbers verdicts use. */
export function modelVersion(hash: string, calibration: Calibration | null): string {
  const c = calibration ? [calibration.threshold, calibration.pixelThreshold, calibration.pixelFloor, calibration.low].join(',') : 'none';
  return createHash('sha256').update(`${hash}\n${c}`).digest('hex').slice(0, 16);
}

/** `info.model` from what is stored (or null for older files), the hash, and what the model itself says. */
export function modelInfo(stored: StoredModel | null, hash: string, backbone: string, images: number, calibration: Calibration | null): ModelInfo {
  return {
    id: stored?.id ?? null,
    hash,
    version: modelVersion(hash, calibration),
    created: stored?.created ?? null,
    packageVersion: stored?.packageVersion ?? null,
    libtorch: stored?.libtorch ?? null,
    backbone,
    trainingSet: { images, sizes: stored?.imageSizes ?? null },
    calibration: calibration && { method: calibration.method, images: calibration.images, threshold: calibration.threshold, falseAlarmRate: calibration.falseAlarmRate },
  };
}

/** The `model` field of a META section checked (absent: an older file, null). `bad` makes the caller's ERR_MODEL_FILE. */
export function readStoredModel(value: unknown, bad: (why: string) => Error): StoredModel | null {
  if (value === undefined || value === null) return null;
  const m = value as Record<string, unknown>;
  if (typeof m !== 'object' || Array.isArray(m)) throw bad('model is not an object');
  for (const key of ['id', 'hash', 'created', 'packageVersion', 'libtorch'])
    if (typeof m[key] !== 'string') throw bad(`model.${key} is not a string`);
  if (!ID.test(m.id as string)) throw bad('model.id is not a model id');
  if (!/^[0-9a-f]{64}$/.test(m.hash as string)) throw bad('model.hash is not a SHA-256');
  const s = m.imageSizes as Record<string, unknown> | null;
  if (s !== null && (typeof s !== 'object' || !['minWidth', 'maxWidth', 'minHeight', 'maxHeight'].every((k) => Number.isInteger(s[k]) && (s[k] as number) > 0)))
    throw bad('model.imageSizes is not a size range');
  return m as unknown as StoredModel;
}
