/**
 * The Engine: fit on good parts, score new images. Orchestration only; every computation runs
 * in the native addon off the event loop. Calls on one engine run one at a time, in the order
 * they were made. What it shares with Ensemble (scoring, thresholds, save, the call queue) is
 * ./scorer.ts; the fit transaction ./transaction.ts; its public types ./types.ts. A little over
 * ~400 lines: most of it is the public methods' TSDoc and examples, which belong beside them.
 */
import { type Calibration, calibrateNominal, poolNominal, upgradeCalibration } from '../calibration.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { type DecodePolicy, type ImageInput, type InputOptions, resolveInput, toRawFrame } from '../io/images.js';
import { type NativeEngine, type NativeOptions, type NativeScore, type RawFrame, native } from '../native.js';
import { type HeadCheck, headCheckPicker, runHeadCheck } from '../head_check/check.js';
import { nativeOptionProblems } from '../option_table.js';
import { type BatchingOptions, type CalibrationOptions, type EngineOptions, headAuto, resolveBatching, resolveCalibration, resolveOptions, storedCalibrationOptions } from '../options.js';
import { ScoreBatcher } from './batcher.js';
import { missingCalibrationWarning } from './decisions.js';
import { readMetadata, writeMetadata } from './metadata.js';
import { type ImageSizes, checkModelId, mergeSizes, modelInfo, newModelRecord } from './model_info.js';
import { readModelFile } from './model_file.js';
import { type ScoreOptions, type ScoreResult, finishResult } from './results.js';
import { Scorer } from './scorer.js';
import { FitControl, type StagedShard, checkMaxStagedPatches, stageShard, stagedBudgetWarning } from './staged_fit.js';
import { fitTransaction } from './transaction.js';
import type { EngineInfo, FitOptions, FitSummary, LoadOptions, StageOptions, UpdateOptions, UpdateSummary } from './types.js';

export type { Progress, StagedShard } from './staged_fit.js';
export type { CalibrateOptions } from './decisions.js';
export type { HeadCheck } from '../head_check/check.js';
export type { ScoreOptions, ScoreResult } from './results.js';
export type { ScoreStreamOptions, StreamItem } from './scorer.js';
export type { ImageSizes, ModelInfo } from './model_info.js';
export type { EngineInfo, FitOptions, FitSummary, LoadOptions, ScoreStreamItem, StageOptions, UpdateOptions, UpdateSummary } from './types.js';

// Each engine's native side, for the ensemble (which stages its members' fits in lockstep): not
// part of the public API.
const natives = new WeakMap<Engine, NativeEngine>();

/** The native engine behind `engine` (package-internal). */
export function nativeOf(engine: Engine): NativeEngine {
  return natives.get(engine)!;
}

// An ensemble commits its members' fits itself: this tells a member its new content hash.
const hashSetters = new WeakMap<Engine, (hash: string) => void>();

/** Sets a member's content hash after the ensemble committed its fit (package-internal). */
export function setMemberHash(engine: Engine, hash: string): void {
  hashSetters.get(engine)!(hash);
}

/**
 * An anomaly-detection engine: one backbone and one memory bank of nominal patch features.
 * @example
 * const engine = await Engine.create({ backbone: 'random_cnn' });
 * await engine.fit(['good/0.png', 'good/1.png']);
 * const { score, map, width, height } = await engine.score('test/0.png');
 * await engine.save('part.rcp');
 */
export class Engine extends Scorer<ScoreResult, NativeScore> {
  // Replaced when a head check keeps the other model (head: 'auto').
  #native: NativeEngine;
  readonly #headAuto: boolean;
  #headCheck: HeadCheck | null;
  readonly #batcher: ScoreBatcher<RawFrame, NativeScore>;
  readonly #input: DecodePolicy;
  protected readonly what = 'engine';

  private constructor(n: NativeEngine, batching: BatchingOptions | false | undefined, input: InputOptions | undefined, calibrationOptions?: CalibrationOptions, label = 'model', auto = false, hash: string | null = null) {
    // Models carry their calibration (and its options) as JSON metadata (checked: a file may be
    // damaged or crafted); older files' calibrations are upgraded to today's shape.
    const meta = readMetadata(n.metadata(), label);
    super(calibrationOptions ?? (n.metadata() ? storedCalibrationOptions(meta.calibrationOptions) : resolveCalibration(undefined)));
    this.#native = n;
    natives.set(this, n);
    const { resize, resizeMode, upscale } = n.options();
    this.#input = { ...resolveInput(input), resizes: [{ resize, resizeMode, upscale }] };
    this.#batcher = new ScoreBatcher((task) => super.exclusive(task), (frames) => this.#native.score(frames), resolveBatching(batching));
    this.calibration = upgradeCalibration(meta.calibration);
    this.#headCheck = meta.headCheck ?? null;
    this.model = meta.model ?? null;
    this.hash = hash;
    hashSetters.set(this, (h) => (this.hash = h));
    // A model fitted with head: 'auto' checks again when it is fitted again.
    this.#headAuto = auto || this.#headCheck !== null;
  }

  #metadata(calibration: Calibration | null, headCheck = this.#headCheck): string {
    return writeMetadata({ calibration, calibrationOptions: this.calibrationOptions, headCheck, model: this.model });
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
    // Files from before model records: the hash is computed from the model itself.
    const hash = readMetadata(n.metadata(), label).model?.hash ?? (await n.contentHash());
    return new Engine(n, options.batching, options.input, undefined, label, false, hash);
  }

  // Every image that enters this engine is decoded here, within its input limits and resize plan.
  protected decode(image: ImageInput, index?: number): Promise<RawFrame> {
    return toRawFrame(image, index, this.#input);
  }

  /**
   * The resolved options this engine runs with (defaults filled in).
   * @example
   * console.log(engine.options.resize, engine.options.coresetRatio, engine.options.device);
   */
  get options(): NativeOptions {
    this.checkAlive();
    return this.#native.options();
  }

  /**
   * What this engine holds now (a fresh object on every read). Never waits: during a fit it
   * describes the model still in use.
   * @example
   * if (!engine.info.fitted) await engine.fit(goodImages);
   */
  get info(): EngineInfo {
    this.checkAlive();
    const { backboneName, ...rest } = this.#native.info();
    const model = this.hash ? modelInfo(this.model, this.hash, backboneName, rest.trainImages, this.calibration) : null;
    return { backbone: backboneName, model, calibration: this.calibration, headCheck: this.#headCheck, batching: this.#batcher.stats, ...rest };
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
    return this.exclusive(async () => {
      const maxStagedPatches = checkMaxStagedPatches(options.maxStagedPatches ?? 0);
      checkModelId(options.modelId);
      const shards = checkShards(options.shards, this.#headAuto);
      const r = await this.#fit(images, { ...options, shards }, 'fit', maxStagedPatches);
      const info = this.#native.info();
      return {
        images: info.trainImages, patches: info.trainPatches, bankRows: info.bankRows, calibrationImages: r.calibrationImages,
        calibration: r.calibration, warnings: [...r.warnings, ...stagedBudgetWarning(maxStagedPatches, info.trainPatches, info.trainImages)], seconds: r.seconds,
      };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Embeds images of good parts for a fit that another engine builds (a distributed fit's shard,
   * `reconpatch/fleet`): their patch features, reduced within `maxStagedPatches` as a bounded fit
   * reduces them, as bytes that `fit(calibrationImages, { shards })` on an engine with the same
   * options reads. This engine's model is untouched. Throws ERR_INVALID_IMAGE, ERR_EMPTY_TRAINING_SET,
   * ERR_ABORTED, ERR_INPUT, ERR_CALLBACK.
   * @example
   * // Two shards (staged on any engines with these options), then the fit calibrated on the rest.
   * const a = await engine.stage(goodImages.slice(0, 50)), b = await engine.stage(goodImages.slice(50, 90));
   * await engine.fit(goodImages.slice(90), { shards: [a.bytes, b.bytes] });
   */
  stage(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: StageOptions = {}): Promise<StagedShard> {
    const stack = new Error();
    return this.exclusive(async () => {
      const maxStagedPatches = checkMaxStagedPatches(options.maxStagedPatches ?? 0);
      const control = new FitControl([this.#native], options.signal, 'engine', 'stage');
      try {
        const { onProgress } = options;
        return await stageShard(this.#native, images, control, { maxStagedPatches, batchSize: this.batchSize(), input: this.#input, onProgress: onProgress && ((p) => onProgress(p)) });
      } finally {
        control.dispose();
      }
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
    return this.exclusive(async () => {
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
   * Patch features of one image, `[rows, dim]` (for analysis and tests).
   * @example
   * const { data, rows, dim } = await engine.embed('frame.png');
   * const firstPatch = data.subarray(0, dim);
   */
  embed(image: ImageInput): Promise<{ data: Float32Array; rows: number; dim: number }> {
    const stack = new Error();
    return this.exclusive(async () => {
      const f = await this.#native.embed([await this.decode(image)]);
      return { data: f.data, rows: f.shape[0], dim: f.shape[1] };
    }).catch((err) => rethrow(err, stack));
  }

  // Score calls made after any other call join a later batch, so they see what it did (a new fit).
  protected override exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#batcher.seal();
    return super.exclusive(fn);
  }

  // Concurrent score() calls share one native batch (./batcher.ts).
  protected override scoreQueued(frame: Promise<RawFrame>): Promise<NativeScore> {
    return this.#batcher.add(frame);
  }

  protected batchSize(): number {
    return this.#native.options().batchSize;
  }

  protected scoreFrames(frames: RawFrame[]): Promise<NativeScore[]> {
    return this.#native.score(frames);
  }

  protected decisionValues(raw: NativeScore): { score: number; map: Float32Array } {
    return raw;
  }

  protected finish(raw: NativeScore, frame: RawFrame, options: ScoreOptions): Promise<ScoreResult> {
    return finishResult(raw, frame, this.calibration, this.modelRef(), options);
  }

  protected requireFitted(): void {
    if (!this.#native.info().fitted) throw new ReconpatchError('ERR_NOT_FITTED', 'the engine is not fitted; call fit() or load() a model first');
  }

  protected encode(): Promise<Buffer> {
    return this.#native.encode();
  }

  protected async release(): Promise<void> {
    this.#native.release();
    natives.delete(this);
  }

  protected override setCalibration(calibration: Calibration): void {
    this.#native.setMetadata(this.#metadata(calibration));
    super.setCalibration(calibration);
  }

  // The fit (or update) transaction (./transaction.ts), calibrated against the pending model.
  // head: 'auto' stages the same images into a second engine (the same options, the head switched),
  // checks both pending models on held-out good images and synthetic defects, and commits one.
  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress, modelId, shards }: FitOptions, mode: 'fit' | 'update', maxStagedPatches: number) {
    const started = performance.now();
    const n = this.#native;
    const auto = mode === 'fit' && this.#headAuto;
    const engines = auto ? [n, await native().createEngine({ ...n.options(), head: !n.options().head })] : [n];
    try {
      const r = await this.#transaction(engines, images, { signal, onProgress, shards }, mode, maxStagedPatches, started);
      await this.#record(mode, modelId, r.sizes);
      return r;
    } finally {
      // head: 'auto' built a second engine: the one not kept (the spare, or the old model) is
      // freed now, not when the GC gets to it.
      for (const e of engines) if (e !== this.#native) e.release();
    }
  }

  // The transaction itself, over one engine or (head: 'auto') two.
  async #transaction(engines: NativeEngine[], images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress, shards }: FitOptions, mode: 'fit' | 'update', maxStagedPatches: number, started: number) {
    const [n] = engines;
    const auto = engines.length > 1;
    const options = this.calibrationOptions;
    const batchSize = n.options().batchSize;
    const r = await fitTransaction(engines, images, {
      what: 'engine', mode, maxStagedPatches, signal, onProgress: onProgress && ((p) => onProgress(p)), calibration: options, input: this.#input, shards,
      ...(auto ? { headCheck: headCheckPicker } : {}),
    }, async (staged, perEngine, control) => {
      let kept = 0;
      let headCheck = this.#headCheck;
      if (auto) {
        const [h, p] = n.options().head ? [0, 1] : [1, 0];
        const c = await runHeadCheck(engines[h], engines[p], staged.checkFrames, n.options().seed, batchSize,
          () => control.check(), (done, total) => control.call(onProgress, { stage: 'check', done, total }));
        kept = c.decision === 'head' ? h : p;
        headCheck = { ...c, seconds: (performance.now() - started) / 1000 };
      }
      const evidence = perEngine[kept];
      const method = staged.calibrationFrames.length ? 'holdout' : 'leave-one-out';
      let calibration: Calibration | null = null;
      if (mode === 'update') calibration = options.enabled ? poolNominal(this.calibration, evidence, options.falseAlarmRate) : this.calibration;
      else if (options.enabled && evidence.length >= 2) calibration = calibrateNominal(evidence, options.falseAlarmRate, method);
      return { commit: [{ engine: engines[kept], metadata: this.#metadata(calibration, headCheck) }], result: { kept: engines[kept], staged, evidence, calibration, headCheck } };
    });
    if (r.kept !== n) {
      this.#native = r.kept;
      natives.set(this, r.kept);
    }
    this.calibration = r.calibration;
    this.#headCheck = r.headCheck;
    const warnings = r.calibration ? r.calibration.warnings : options.enabled ? [missingCalibrationWarning(r.evidence.length)] : [];
    return { images: r.staged.images, calibrationImages: r.evidence.length, calibration: r.calibration, warnings, seconds: (performance.now() - started) / 1000, sizes: r.staged.sizes };
  }

  // The committed model's identity (./model_info.ts): its hash, and a record kept in its META. An
  // update keeps the id and adds its images' sizes (unknown stays unknown for an older file's model).
  async #record(mode: 'fit' | 'update', modelId: string | undefined, sizes: ImageSizes) {
    const hash = await this.#native.contentHash();
    const imageSizes = mode === 'fit' ? sizes : this.model ? mergeSizes(this.model.imageSizes, sizes) : null;
    this.model = newModelRecord(hash, this.model, modelId, imageSizes);
    this.hash = hash;
    this.#native.setMetadata(this.#metadata(this.calibration));
  }
}

/** `shards` checked: absent, or an Iterable or AsyncIterable (not with head: 'auto'); each item is checked as it is read. Throws ERR_INVALID_OPTION. */
function checkShards(shards: unknown, headAuto: boolean): FitOptions['shards'] {
  if (shards === undefined) return undefined;
  if (shards === null || typeof shards !== 'object' || !(Symbol.iterator in shards || Symbol.asyncIterator in shards) || shards instanceof Uint8Array)
    throw new ReconpatchError('ERR_INVALID_OPTION', 'shards must be an Iterable or AsyncIterable of Uint8Array (the bytes Engine.stage returned)');
  if (headAuto) throw new ReconpatchError('ERR_INVALID_OPTION', "head: 'auto' cannot fit from shards (its check needs the images themselves); fit from shards with head true or false");
  return shards as FitOptions['shards'];
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
