/**
 * The public types of {@link Engine}'s options and answers (apart from the class, so that
 * engine.ts holds the behaviour).
 */
import type { Calibration } from '../calibration.js';
import type { HeadCheck } from '../head_check/check.js';
import type { InputOptions } from '../io/images.js';
import type { NativeInfo } from '../native.js';
import type { BatchingOptions } from '../options.js';
import type { ModelInfo } from './model_info.js';
import type { ScoreResult } from './results.js';
import type { StreamItem } from './scorer.js';
import type { Progress } from './staged_fit.js';

/**
 * Options of {@link Engine.fit}.
 * @example
 * const controller = new AbortController();
 * setTimeout(() => controller.abort(), 60_000);
 * await engine.fit(goodImages, { signal: controller.signal, onProgress: (p) => console.log(p.stage, p.done) });
 */
export interface FitOptions {
  /** Aborts the fit within one batch or coreset step; the engine keeps its previous state. */
  signal?: AbortSignal;
  /** Called as the fit advances through its stages (synchronously; keep it cheap). */
  onProgress?: (p: Progress) => void;
  /**
   * Bounds the patch features held during the fit, for inputs of any length (a month of frames):
   * when the staged patches exceed it they are reduced to a coreset of half this many and the fit
   * goes on (merge and reduce). Default: unbounded. Memory and quality measured: docs/results.md.
   * Reduced images cannot be scored leave-one-out, so such a fit calibrates on held-out images
   * (`calibration.holdout`, 10% when it is 0). At least 512 (`MIN_STAGED_PATCHES`: a reduce keeps
   * half, and 256 rows are one 128 x 128 image's patches), else ERR_INVALID_OPTION; a budget under
   * two fit images' patches is taken, with a warning in `FitSummary.warnings`.
   */
  maxStagedPatches?: number;
  /**
   * The model's id (`info.model.id`, named by every score result): letters, digits, `.`, `_`, `-`,
   * up to 128. Default: the id the engine's model already has, else a new UUID.
   */
  modelId?: string;
  /**
   * Builds the model from features staged elsewhere ({@link Engine.stage} on engines with the same
   * options: a distributed fit's shards) instead of from `images`; `images` are then good images
   * held out for calibration only (scored against the new model, never put in the bank). The
   * shards are merged and reduced within `maxStagedPatches` as a bounded fit's batches are.
   * A shard staged with another backbone or other options: ERR_INVALID_OPTION; damaged bytes:
   * ERR_MODEL_FILE; no shards: ERR_EMPTY_TRAINING_SET. Not with `head: 'auto'`. An AsyncIterable
   * is read one shard at a time (a merge holds one shard's bytes, not all of them).
   */
  shards?: Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

/**
 * Options of {@link Engine.stage}.
 * @example
 * const shard = await engine.stage(goodImages.slice(0, 100), { maxStagedPatches: 100_000 });
 */
export interface StageOptions {
  /** Aborts the staging; the engine keeps its model. */
  signal?: AbortSignal;
  /** Called after each batch (stage `'embed'`). */
  onProgress?: (p: Progress) => void;
  /** As in {@link FitOptions.maxStagedPatches}: the staged rows are reduced to stay within it. Default: unbounded. */
  maxStagedPatches?: number;
}

/**
 * Options of {@link Engine.update}.
 * @example
 * await engine.update(goodImages, { onProgress: (p) => console.log(p.stage, p.done) });
 */
export interface UpdateOptions {
  /** Aborts the update; the engine keeps its previous model and calibration. */
  signal?: AbortSignal;
  /** Called as the update advances (`'embed'`, `'coreset'`, `'calibrate'`). */
  onProgress?: (p: Progress) => void;
}

/**
 * What {@link Engine.update} did.
 * @example
 * const { addedRows, bankRows } = await engine.update(goodImages);
 * console.log(addedRows === 0 ? 'nothing new' : `${addedRows} new bank rows, ${bankRows} in all`);
 */
export interface UpdateSummary {
  /** New images whose patches were considered for the bank. */
  images: number;
  /** New images the threshold was re-estimated with (scored leave-one-image-out against the grown bank, or held out). */
  calibrationImages: number;
  /** The thresholds after the update (the new evidence pooled with the stored one). */
  calibration: Calibration | null;
  /** What deserves attention (thin evidence, a kept manual threshold, ...). Empty when none. */
  warnings: string[];
  /** Rows the bank gained: new patches farther from it than its coverage radius. */
  addedRows: number;
  /** Rows in the bank now. */
  bankRows: number;
  /** Wall-clock duration. */
  seconds: number;
}

/**
 * What {@link Engine.fit} did.
 * @example
 * const { images, bankRows, seconds } = await engine.fit(goodImages);
 * console.log(`${images} images -> ${bankRows} bank rows in ${seconds.toFixed(1)} s`);
 */
export interface FitSummary {
  /** Images in the memory bank. */
  images: number;
  /** Nominal images the threshold was calibrated on (scored leave-one-image-out, or held out). */
  calibrationImages: number;
  /** The thresholds this fit set (null: calibration off, or too few images). */
  calibration: Calibration | null;
  /** What deserves attention (thin calibration evidence, ...); the CLI prints them. Empty when none. */
  warnings: string[];
  /** Patch features extracted from the bank images (before the coreset). */
  patches: number;
  /** Rows kept in the memory bank by the coreset. */
  bankRows: number;
  /** Wall-clock duration of the fit. */
  seconds: number;
}

/**
 * Options for {@link Engine.load}: runtime settings that are not saved with a model.
 * @example
 * const engine = await Engine.load('part.rcp', { batching: { maxBatch: 16 } });
 */
export interface LoadOptions {
  /** Batching of concurrent `score()` calls, as in {@link EngineOptions.batching}. */
  batching?: BatchingOptions | false;
  /** libtorch intra-op threads on this machine (default: the model's `threads` option, 0 = all cores); at most the machine's cores. */
  threads?: number;
  /** What inputs are accepted (pixel budget, damaged images), as in {@link EngineOptions.input}. */
  input?: InputOptions;
}

/**
 * One item of {@link Engine.scoreStream}: a result, or (with `onError: 'yield'`) an error, with the input's position.
 * @example
 * for await (const item of engine.scoreStream(goodImages, { onError: 'yield' })) {
 *   if (item.error) console.error(item.index, item.error.code);
 *   else console.log(item.index, item.score);
 * }
 */
export type ScoreStreamItem = StreamItem<ScoreResult>;

/**
 * What an engine holds: its backbone's identity, the bank's size, the device, the calibration.
 * @example
 * const { backbone, fitted, bankRows, device, calibration } = engine.info;
 * console.log(backbone, fitted, bankRows, device, calibration?.threshold);
 */
export interface EngineInfo extends Omit<NativeInfo, 'backboneName'> {
  /** The backbone's name: `'random_cnn'` or the TorchScript file's `name` attribute or path. */
  backbone: string;
  /** What the model is and where it comes from (id, version, hash, provenance, training set); null before a fit. */
  model: ModelInfo | null;
  /** Threshold statistics from held-out nominal images, or null. */
  calibration: Calibration | null;
  /** `head: 'auto'`: what the last fit's head check found and kept (null: no check ran). */
  headCheck: HeadCheck | null;
  /** Batching of `score()` calls: the options, and calls served in how many native batches so far. */
  batching: { maxBatch: number; maxWaitMs: number; calls: number; batches: number };
}
