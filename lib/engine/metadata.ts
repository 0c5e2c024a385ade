/**
 * A model's JSON metadata (the META section of its file, opaque to the native side): the
 * calibration and its options, the head check, the model's identity (./model_info.ts). Read back checked, since a file may be damaged or
 * crafted: anything of the wrong shape is ERR_MODEL_FILE.
 */
import type { Calibration } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { type HeadCheck, readHeadCheck } from '../head_check/check.js';
import type { CalibrationOptions } from '../options.js';
import { type StoredModel, readStoredModel } from './model_info.js';

/** What an engine keeps in its model's META section. */
export interface EngineMetadata {
  calibration?: Calibration | null;
  calibrationOptions?: CalibrationOptions;
  headCheck?: HeadCheck | null;
  /** Absent in files written before models carried their identity. */
  model?: StoredModel | null;
}

/** The META text for `meta` (fields that are absent or null-by-default are left out). */
export function writeMetadata({ calibration, calibrationOptions, headCheck, model }: EngineMetadata): string {
  return JSON.stringify({ calibration, calibrationOptions, ...(headCheck ? { headCheck } : {}), ...(model ? { model } : {}) });
}

/** A model's JSON metadata (the META section), checked for the shape it must have: ERR_MODEL_FILE otherwise. */
export function readMetadata(text: string, label: string): EngineMetadata {
  if (!text) return {};
  const bad = (why: string) => new ReconpatchError('ERR_MODEL_FILE', `${label} has metadata that reconpatch did not write (${why}); it is damaged or was not written by reconpatch`);
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (!isObject(meta)) throw bad('not a JSON object');
  const c = meta.calibration;
  if (c !== undefined && c !== null) {
    if (!isObject(c)) throw bad('calibration is not an object');
    // The numbers scores are normalised with (lib/calibration.ts).
    for (const key of ['threshold', 'low'])
      if (typeof c[key] !== 'number' || !Number.isFinite(c[key])) throw bad(`calibration.${key} is not a finite number`);
  }
  if (meta.calibrationOptions !== undefined && !isObject(meta.calibrationOptions)) throw bad('calibrationOptions is not an object');
  const headCheck = readHeadCheck(meta.headCheck, bad);
  const model = readStoredModel(meta.model, bad);
  return { ...(meta as EngineMetadata), headCheck, model };
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}
