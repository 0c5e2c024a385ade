/**
 * The Engine: fit on good parts, score new images. Orchestration only; every computation runs
 * in the native addon off the event loop. Calls on one engine run one at a time, in the order
 * they were made.
 *
 * Longer than ~400 lines because it is the public API surface (create, load, fit, update, score,
 * scoreMany, scoreStream, calibrate, save, info), each method short; the shared machinery lives
 * beside it (staged_fit.ts, decisions.ts, results.ts, queue.ts, batcher.ts, model_file.ts).
 */
import { Duplex } from 'node:stream';

import { type Calibration, calibrateNominal, poolNominal, upgradeCalibration } from '../calibration.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { type DecodePolicy, type ImageInput, type InputOptions, resolveInput, toRawFrame } from '../io/images.js';
import { type NativeEngine, type NativeInfo, type NativeOptions, type NativeScore, type RawFrame, native } from '../native.js';
import { type HeadCheck, headCheckPicker, readHeadCheck, runHeadCheck } from '../head_check/check.js';
import { nativeOptionProblems } from '../option_table.js';
import { type BatchingOptions, type CalibrationOptions, type EngineOptions, headAuto, resolveBatching, resolveCalibration, resolveOptions, storedCalibrationOptions } from '../options.js';
import { ScoreBatcher } from './batcher.js';
import { type CalibrateOptions, calibrationFromResults, checkThreshold, manualCalibration, missingCalibrationWarning } from './decisions.js';
import { readModelFile, writeFileAtomically } from './model_file.js';
import { orderedMap } from './ordered.js';
import { CallQueue } from './queue.js';
import { type ScoreOptions, type ScoreResult, checkScoreOptions, finishResult } from './results.js';
import { FitControl, type Progress, abortFit, checkMaxStagedPatches, nominalEvidence, stageFit, stagedBudgetWarning } from './staged_fit.js';

export type { Progress } from './staged_fit.js';
export type { CalibrateOptions } from './decisions.js';
export type { HeadCheck } from '../head_check/check.js';
export type { ScoreOptions, ScoreResult } from './results.js';

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
 * Options of {@link Engine.scoreStream} and {@link Engine.createScoreStream}.
 * @example
 * const items = engine.scoreStream(goodImages, { concurrency: 4, signal, onError: 'yield' });
 */
export interface ScoreStreamOptions extends ScoreOptions {
  /** Images decoded or scored at once (default 2). The next input is pulled only when one finishes. */
  concurrency?: number;
  /** Stops the stream within one image; throws ERR_ABORTED. */
  signal?: AbortSignal;
  /** `'throw'` (default) ends the stream at the first bad image; `'yield'` reports it as `{ index, error }` and goes on. */
  onError?: 'throw' | 'yield';
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
export type ScoreStreamItem = (ScoreResult & { index: number; error?: undefined }) | { index: number; error: ReconpatchError };

/**
 * What an engine holds: its backbone's identity, the bank's size, the device, the calibration.
 * @example
 * const { backbone, fitted, bankRows, device, calibration } = engine.info;
 * console.log(backbone, fitted, bankRows, device, calibration?.threshold);
 */
export interface EngineInfo extends Omit<NativeInfo, 'backboneName'> {
  /** The backbone's name: `'random_cnn'` or the TorchScript file's `name` attribute or path. */
  backbone: string;
  /** Threshold statistics from held-out nominal images, or null. */
  calibration: Calibration | null;
  /** `head: 'auto'`: what the last fit's head check found and kept (null: no check ran). */
  headCheck: HeadCheck | null;
  /** Batching of `score()` calls: the options, and calls served in how many native batches so far. */
  batching: { maxBatch: number; maxWaitMs: number; calls: number; batches: number };
}

// Each engine's native side, for the ensemble (which stages its members' fits in lockstep): not
// part of the public API.
const natives = new WeakMap<Engine, NativeEngine>();

/** The native engine behind `engine` (package-internal). */
export function nativeOf(engine: Engine): NativeEngine {
  return natives.get(engine)!;
}

/**
 * An anomaly-detection engine: one backbone and one memory bank of nominal patch features.
 * @example
 * const engine = await Engine.create({ backbone: 'random_cnn' });
 * await engine.fit(['good/0.png', 'good/1.png']);
 * const { score, map, width, height } = await engine.score('test/0.png');
 * await engine.save('part.rcp');
 */
export class Engine {
  // Replaced when a head check keeps the other model (head: 'auto').
  #native: NativeEngine;
  readonly #calibrationOptions: CalibrationOptions;
  #calibration: Calibration | null = null;
  readonly #headAuto: boolean;
  #headCheck: HeadCheck | null;
  readonly #queue = new CallQueue();
  readonly #batcher: ScoreBatcher<RawFrame, NativeScore>;
  readonly #input: DecodePolicy;

  private constructor(n: NativeEngine, batching: BatchingOptions | false | undefined, input: InputOptions | undefined, calibrationOptions?: CalibrationOptions, label = 'model', auto = false) {
    this.#native = n;
    natives.set(this, n);
    const { resize, resizeMode } = n.options();
    this.#input = { ...resolveInput(input), resizes: [{ resize, resizeMode }] };
    this.#batcher = new ScoreBatcher((task) => this.#queue.run(task), (frames) => this.#native.score(frames), resolveBatching(batching));
    // Models carry their calibration (and its options) as JSON metadata (checked: a file may be
    // damaged or crafted); older files' calibrations are upgraded to today's shape.
    const meta = readMetadata(n.metadata(), label);
    this.#calibration = upgradeCalibration(meta.calibration);
    this.#calibrationOptions = calibrationOptions ?? (n.metadata() ? storedCalibrationOptions(meta.calibrationOptions) : resolveCalibration(undefined));
    this.#headCheck = meta.headCheck ?? null;
    // A model fitted with head: 'auto' checks again when it is fitted again.
    this.#headAuto = auto || this.#headCheck !== null;
  }

  #metadata(calibration: Calibration | null, headCheck = this.#headCheck): string {
    return JSON.stringify({ calibration, calibrationOptions: this.#calibrationOptions, ...(headCheck ? { headCheck } : {}) });
  }

  /**
   * Builds an engine (loads and validates the backbone). Throws ERR_INVALID_OPTION, ERR_BACKBONE,
   * ERR_DEVICE_UNAVAILABLE (`device: 'cuda'` on a CPU build or without a visible GPU).
   * @example
   * const engine = await Engine.create({ backbone: 'random_cnn', resize: 256, crop: 224, coreset: { ratio: 0.1 } });
   */
  static async create(options: EngineOptions): Promise<Engine> {
    const stack = new Error();
    try {
      const resolved = resolveOptions(options);
      const calibration = resolveCalibration(options.calibration);
      resolveBatching(options.batching); // validate before the backbone loads
      resolveInput(options.input);
      return new Engine(await native().createEngine(resolved), options.batching, options.input, calibration, 'model', headAuto(options.head));
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * Loads a model saved by {@link Engine.save}. Throws ERR_MODEL_FILE for damaged, foreign or
   * unreadable files (regular files only), ERR_DEVICE_UNAVAILABLE, ERR_INVALID_OPTION.
   * @example
   * const engine = await Engine.load('part.rcp');
   * console.log(engine.info.fitted, engine.info.bankRows);
   */
  static async load(path: string, options: LoadOptions = {}): Promise<Engine> {
    const stack = new Error();
    try {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'load expects a file path');
      checkLoadOptions(options);
      return await Engine.#fromBytes(await readModelFile(path), `model file '${path}'`, options);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * Loads a model from the bytes of a model file ({@link Engine.saveBytes}), e.g. from a database
   * or an object store. Throws as {@link Engine.load}.
   * @example
   * const bytes = await engine.saveBytes();
   * const copy = await Engine.loadBytes(bytes);
   */
  static async loadBytes(bytes: Uint8Array, options: LoadOptions = {}): Promise<Engine> {
    const stack = new Error();
    try {
      if (!(bytes instanceof Uint8Array)) throw new ReconpatchError('ERR_INVALID_OPTION', 'loadBytes expects a Buffer or Uint8Array');
      checkLoadOptions(options);
      const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      return await Engine.#fromBytes(buffer, 'model bytes', options);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  // Decode, check the options as Engine.create would (a model file is data, not trusted code),
  // then build: nothing is constructed from options that fail the table.
  static async #fromBytes(bytes: Buffer, label: string, options: LoadOptions): Promise<Engine> {
    const decoded = await native().decodeModel(bytes, label);
    const problems = nativeOptionProblems(decoded.options as unknown as Record<string, unknown>);
    if (problems.length)
      throw new ReconpatchError('ERR_MODEL_FILE', `${label} holds options reconpatch does not accept (${problems.join('; ')}); it is damaged or was not written by reconpatch`);
    let n: NativeEngine;
    try {
      n = await native().loadEngine(decoded.model);
    } catch (err) {
      // The backbone a model file carries is part of the file: if it cannot be restored, the file is bad.
      if ((err as { code?: string }).code === 'ERR_BACKBONE')
        throw new ReconpatchError('ERR_MODEL_FILE', `${label}: its backbone cannot be restored (${(err as Error).message})`, { cause: err });
      throw err;
    }
    if (options.threads !== undefined) n.setThreads(options.threads);
    return new Engine(n, options.batching, options.input, undefined, label);
  }

  // Every image that enters this engine is decoded here, within its input limits and resize plan.
  #decode(image: ImageInput, index?: number): Promise<RawFrame> {
    return toRawFrame(image, index, this.#input);
  }

  /**
   * The resolved options this engine runs with (defaults filled in).
   * @example
   * console.log(engine.options.resize, engine.options.coresetRatio, engine.options.device);
   */
  get options(): NativeOptions {
    return this.#native.options();
  }

  /**
   * What this engine holds now (a fresh object on every read). Never waits: during a fit it
   * describes the model still in use.
   * @example
   * if (!engine.info.fitted) await engine.fit(goodImages);
   */
  get info(): EngineInfo {
    const { backboneName, ...rest } = this.#native.info();
    return { backbone: backboneName, calibration: this.#calibration, headCheck: this.#headCheck, batching: this.#batcher.stats, ...rest };
  }

  /**
   * Fits on images of good parts. Streams: decodes and embeds `batchSize` images at a time and
   * never holds all decoded images. The new model replaces the old one only when the whole fit
   * (calibration included) has succeeded: a failed or aborted fit leaves the engine as it was.
   * Throws ERR_INVALID_IMAGE (naming the image), ERR_EMPTY_TRAINING_SET, ERR_ABORTED, ERR_INPUT
   * (the iterable threw), ERR_CALLBACK (onProgress threw).
   * @example
   * const summary = await engine.fit(['good/000.png', 'good/001.png', 'good/002.png', 'good/003.png']);
   */
  fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: FitOptions = {}): Promise<FitSummary> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const maxStagedPatches = checkMaxStagedPatches(options.maxStagedPatches ?? 0);
      const r = await this.#fit(images, options, 'fit', maxStagedPatches);
      const info = this.#native.info();
      return {
        images: info.trainImages, patches: info.trainPatches, bankRows: info.bankRows, calibrationImages: r.calibrationImages,
        calibration: r.calibration, warnings: [...r.warnings, ...stagedBudgetWarning(maxStagedPatches, info.trainPatches, info.trainImages)], seconds: r.seconds,
      };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Takes new images of good parts into a fitted (or loaded) model without refitting: their
   * patches (through the head's `f` when the model has one) are compared with the bank, and the
   * greedy coreset goes on from the bank's coverage, adding the farthest new patch while it lies
   * farther than the radius at which the fit's selection stopped. Images that show nothing new
   * add nothing. Every new image stays in the update; as in fit, up to `calibration.maxImages` of
   * them are scored against the grown bank without their own patches, and the threshold is
   * re-estimated by the nominal rule on that evidence pooled with the evidence the calibration
   * kept (a threshold set by labels or by hand is kept). Abort or failure leaves the model as it was.
   * Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE, ERR_EMPTY_TRAINING_SET, ERR_ABORTED, ERR_INPUT, ERR_CALLBACK.
   * @example
   * const { addedRows } = await engine.update(['shift2/000.png', 'shift2/001.png', 'shift2/002.png', 'shift2/003.png']);
   */
  update(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: UpdateOptions = {}): Promise<UpdateSummary> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const rowsBefore = this.#native.info().bankRows;
      const r = await this.#fit(images, options, 'update', 0);
      const info = this.#native.info();
      return {
        images: r.images, calibrationImages: r.calibrationImages, calibration: r.calibration, warnings: r.warnings,
        addedRows: info.bankRows - rowsBefore, bankRows: info.bankRows, seconds: r.seconds,
      };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores one image: raw and calibrated score, and the anomaly map at the image's own size.
   * Calls made while the engine is busy are scored together in one native batch (see
   * {@link EngineOptions.batching}); each gets exactly the result it would get alone. The call
   * takes its place among the engine's calls when it is made (a score made before a fit sees the
   * old model), while its image is still being decoded.
   * Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE.
   * @example
   * const { score, normalizedScore, isAnomaly, map, width, height } = await engine.score('frame.png');
   */
  score(image: ImageInput, options: ScoreOptions = {}): Promise<ScoreResult> {
    const stack = new Error();
    try {
      checkScoreOptions(options);
    } catch (err) {
      return Promise.reject(err).catch((e) => rethrow(e, stack));
    }
    // Decoding and the heatmap run outside the engine's queue, overlapping other calls' native work.
    const frame = this.#decode(image);
    frame.catch(() => undefined); // reported through the batcher, to this call only
    return this.#batcher
      .add(frame)
      .then(async (r) => finishResult(r, await frame, this.#calibration, options))
      .catch((err) => rethrow(err, stack));
  }

  /**
   * Sets the decision thresholds from images scored now with the fitted model, and keeps them with
   * the model (saved by {@link Engine.save}). With `labels` (1 = defective, 0 = good; at least one
   * defective): the image threshold that maximises F1 on them (`objective: 'f1'`, the default) or
   * the highest one that reaches `objective: { recall }`; the pixel thresholds stay the fit's. Without
   * labels the images are taken as good parts and the nominal rule of the fit is applied to them.
   * Throws ERR_NOT_FITTED, ERR_INVALID_OPTION, ERR_INVALID_IMAGE.
   * @example
   * const c = await engine.calibrate(['val/good1.png', 'val/crack1.png'], { labels: [0, 1], objective: { recall: 0.95 } });
   * console.log(c.threshold, c.validation?.recall);
   */
  calibrate(images: ImageInput[], options: CalibrateOptions = {}): Promise<Calibration> {
    const stack = new Error();
    return this.#exclusive(async () => {
      if (!Array.isArray(images) || images.length === 0) throw new ReconpatchError('ERR_INVALID_OPTION', 'calibrate expects a non-empty array of images');
      if (!this.#native.info().fitted) throw new ReconpatchError('ERR_NOT_FITTED', 'the engine is not fitted; call fit() or load() a model before calibrate()');
      const batchSize = this.#native.options().batchSize;
      const results: { score: number; map: Float32Array }[] = [];
      for (let i = 0; i < images.length; i += batchSize) {
        const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => this.#decode(img, i + j)));
        results.push(...(await this.#native.score(frames)));
      }
      const calibration = calibrationFromResults(results, options, this.#calibration, this.#calibrationOptions.falseAlarmRate);
      this.#native.setMetadata(this.#metadata(calibration));
      this.#calibration = calibration;
      return calibration;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Sets the image threshold by hand (raw score units, as `score` and `info.calibration.threshold`),
   * and optionally the pixel threshold of regions and contours; kept with the model. Takes its
   * place among the engine's calls (a score made before it uses the old threshold).
   * Throws ERR_INVALID_OPTION, ERR_NOT_FITTED.
   * @example
   * await engine.setThreshold(engine.info.calibration!.threshold * 0.9); // flag more
   */
  setThreshold(threshold: number, options: { pixelThreshold?: number } = {}): Promise<void> {
    const stack = new Error();
    return this.#exclusive(async () => {
      checkThreshold(threshold, options);
      if (!this.#native.info().fitted) throw new ReconpatchError('ERR_NOT_FITTED', 'the engine is not fitted; a threshold applies to a fitted model (fit() or load() first)');
      const calibration = manualCalibration(this.#calibration, threshold, options.pixelThreshold);
      this.#native.setMetadata(this.#metadata(calibration));
      this.#calibration = calibration;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores several images in native batches; results in input order.
   * @example
   * const results = await engine.scoreMany(['a.png', 'b.png']);
   * const worst = Math.max(...results.map((r) => r.score));
   */
  scoreMany(images: ImageInput[], options: ScoreOptions = {}): Promise<ScoreResult[]> {
    const stack = new Error();
    return this.#exclusive(async () => {
      if (!Array.isArray(images)) throw new ReconpatchError('ERR_INVALID_OPTION', 'scoreMany expects an array of images');
      checkScoreOptions(options);
      const batchSize = this.#native.options().batchSize;
      const out: ScoreResult[] = [];
      for (let i = 0; i < images.length; i += batchSize) {
        const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => this.#decode(img, i + j)));
        const raw = await this.#native.score(frames);
        for (const [j, r] of raw.entries()) out.push(await finishResult(r, frames[j], this.#calibration, options));
      }
      return out;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores any Iterable or AsyncIterable of images, yielding results in input order with at most
   * `concurrency` images in flight (backpressure: inputs are pulled only when there is room).
   * @example
   * for await (const r of engine.scoreStream(goodImages, { onError: 'yield' })) {
   *   if (r.error) console.error(r.index, r.error.code);
   *   else if (r.isAnomaly) console.log('defect in image', r.index);
   * }
   */
  async *scoreStream(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: ScoreStreamOptions = {}): AsyncGenerator<ScoreStreamItem> {
    const { concurrency = 2, signal, onError = 'throw', heatmap } = options;
    const outcomes = orderedMap(images, (image) => this.score(image, { heatmap }), { concurrency, signal, onError, name: 'scoreStream', items: 'images' });
    for await (const o of outcomes) yield 'error' in o ? { index: o.index, error: o.error } : { ...o.result, index: o.index };
  }

  /**
   * The same as {@link Engine.scoreStream} as an object-mode Duplex for `stream.pipeline()`:
   * images in, {@link ScoreStreamItem}s out.
   * @example
   * const { pipeline } = await import('node:stream/promises');
   * const { Readable, Writable } = await import('node:stream');
   * await pipeline(Readable.from(goodImages), engine.createScoreStream({ concurrency: 2 }),
   *   new Writable({ objectMode: true, write: (item: ScoreStreamItem, _enc, done) => { console.log(item.index); done(); } }));
   */
  createScoreStream(options: ScoreStreamOptions = {}): Duplex {
    return Duplex.from(async function* (this: Engine, source: AsyncIterable<ImageInput>) {
      yield* this.scoreStream(source, options);
    }.bind(this));
  }

  /**
   * Saves the fitted model to one file (written to a temporary file, fsynced, then renamed, so an
   * existing file is never half-overwritten). Throws ERR_NOT_FITTED, ERR_IO.
   * @example
   * await engine.save('part.rcp');
   */
  save(path: string): Promise<void> {
    const stack = new Error();
    return this.#exclusive(async () => {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'save expects a file path');
      await writeFileAtomically(path, await this.#native.encode());
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * The fitted model as the bytes of a model file (what {@link Engine.save} writes), for storage
   * elsewhere; {@link Engine.loadBytes} reads them. Throws ERR_NOT_FITTED.
   * @example
   * const bytes: Buffer = await engine.saveBytes();
   */
  saveBytes(): Promise<Buffer> {
    const stack = new Error();
    return this.#exclusive(() => this.#native.encode()).catch((err) => rethrow(err, stack));
  }

  /**
   * Patch features of one image, `[rows, dim]` (for analysis and tests).
   * @example
   * const { data, rows, dim } = await engine.embed('frame.png');
   * const firstPatch = data.subarray(0, dim);
   */
  embed(image: ImageInput): Promise<{ data: Float32Array; rows: number; dim: number }> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const f = await this.#native.embed([await this.#decode(image)]);
      return { data: f.data, rows: f.shape[0], dim: f.shape[1] };
    }).catch((err) => rethrow(err, stack));
  }

  // Runs calls one after another: fit, score and save never interleave on one engine. Score
  // calls made after this one join a later batch, so they see what this call did (a new fit).
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#batcher.seal();
    return this.#queue.run(fn);
  }

  // The fit (or update) transaction: stage, calibrate against the pending model, commit model and
  // calibration together.
  // head: 'auto' stages the same images into a second engine (the same options, the head switched),
  // checks both pending models on held-out good images and synthetic defects, and commits one.
  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress }: FitOptions, mode: 'fit' | 'update', maxStagedPatches: number) {
    const started = performance.now();
    const n = this.#native;
    const auto = mode === 'fit' && this.#headAuto;
    const engines = auto ? [n, await native().createEngine({ ...n.options(), head: !n.options().head })] : [n];
    const control = new FitControl(engines, signal, 'engine', mode);
    try {
      const batchSize = n.options().batchSize;
      const staged = await stageFit(engines, images, control, {
        mode, maxStagedPatches, onProgress: onProgress && ((p) => onProgress(p)), calibration: this.#calibrationOptions, batchSize, input: this.#input,
        ...(auto ? { headCheck: headCheckPicker } : {}),
      });
      const perEngine = await nominalEvidence(engines, staged, control, batchSize, onProgress && ((p) => onProgress(p)));
      let kept = 0;
      let headCheck = this.#headCheck;
      if (auto) {
        const [h, p] = n.options().head ? [0, 1] : [1, 0];
        const r = await runHeadCheck(engines[h], engines[p], staged.checkFrames, n.options().seed, batchSize,
          () => control.check(), (done, total) => control.call(onProgress, { stage: 'check', done, total }));
        kept = r.decision === 'head' ? h : p;
        headCheck = { ...r, seconds: (performance.now() - started) / 1000 };
        engines[1 - kept].fitAbort();
      }
      const evidence = perEngine[kept];
      const options = this.#calibrationOptions;
      const method = staged.calibrationFrames.length ? 'holdout' : 'leave-one-out';
      let calibration: Calibration | null = null;
      if (mode === 'update') calibration = options.enabled ? poolNominal(this.#calibration, evidence, options.falseAlarmRate) : this.#calibration;
      else if (options.enabled && evidence.length >= 2) calibration = calibrateNominal(evidence, options.falseAlarmRate, method);
      engines[kept].fitCommit(this.#metadata(calibration, headCheck));
      if (kept !== 0) {
        this.#native = engines[kept];
        natives.set(this, engines[kept]);
      }
      this.#calibration = calibration;
      this.#headCheck = headCheck;
      const warnings = calibration ? calibration.warnings : options.enabled ? [missingCalibrationWarning(evidence.length)] : [];
      return { images: staged.images, calibrationImages: evidence.length, calibration, warnings, seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      abortFit(engines);
      throw control.explain(err);
    } finally {
      control.dispose();
    }
  }
}

function checkLoadOptions(options: LoadOptions): void {
  if (options === null || typeof options !== 'object') throw new ReconpatchError('ERR_INVALID_OPTION', 'load options must be an object');
  for (const key of Object.keys(options))
    if (key !== 'batching' && key !== 'threads' && key !== 'input') throw new ReconpatchError('ERR_INVALID_OPTION', `unknown load option '${key}'`);
  resolveBatching(options.batching);
  resolveInput(options.input);
  const { threads } = options;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 1024))
    throw new ReconpatchError('ERR_INVALID_OPTION', `threads must be an integer in [1, 1024], got ${JSON.stringify(threads)}`);
}

/** A model's JSON metadata (the META section), checked for the shape it must have: ERR_MODEL_FILE otherwise. */
function readMetadata(text: string, label: string): { calibration?: Calibration | null; calibrationOptions?: CalibrationOptions; headCheck?: HeadCheck | null } {
  if (!text) return {};
  const bad = (why: string) => new ReconpatchError('ERR_MODEL_FILE', `${label} has metadata that reconpatch did not write (${why}); it is damaged or was not written by reconpatch`);
  let meta: unknown;
  try {
    meta = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);
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
  return { ...(meta as { calibration?: Calibration | null; calibrationOptions?: CalibrationOptions }), headCheck };
}
