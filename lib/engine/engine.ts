/**
 * The Engine: fit on good parts, score new images. Orchestration only; every computation runs
 * in the native addon off the event loop. Calls on one engine are serialised in arrival order.
 */
import { Duplex } from 'node:stream';

import { type Calibration, calibrate, holdoutPicker, normalize } from '../calibration.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { heatmapPng } from '../heatmap.js';
import { type ImageInput, describeInput, toRawFrame } from '../io/images.js';
import { type NativeEngine, type NativeInfo, type NativeOptions, type NativeScore, type RawFrame, native } from '../native.js';
import { ScoreBatcher } from './batcher.js';
import { orderedMap } from './ordered.js';
import { type BatchingOptions, type CalibrationOptions, type EngineOptions, resolveBatching, resolveCalibration, resolveOptions } from '../options.js';

/**
 * A fit or scoring stage's progress. `total` is undefined when the input's length is unknown.
 * @example
 * await engine.fit(goodImages, { onProgress: (p: Progress) => console.log(p.stage, p.done, p.total ?? '?', p.loss ?? '') });
 */
export interface Progress {
  /** `'embed'` (images), `'head'` (training iterations), `'coreset'` (selected rows), `'calibrate'` (held-out images). */
  stage: 'embed' | 'head' | 'coreset' | 'calibrate';
  /** Units of this stage done so far. */
  done: number;
  /** Units in this stage, when known. */
  total?: number;
  /** Head training: the iteration's loss. */
  loss?: number;
}

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
  /** Nominal images held out to calibrate the threshold. */
  calibrationImages: number;
  /** Patch features extracted from the bank images (before the coreset). */
  patches: number;
  /** Rows kept in the memory bank by the coreset. */
  bankRows: number;
  /** Wall-clock duration of the fit. */
  seconds: number;
}

/**
 * One image's result. `map` is the anomaly map, row-major `height` x `width`, at the input's size.
 * @example
 * const r: ScoreResult = await engine.score('frame.png');
 * const centre = r.map[Math.floor(r.height / 2) * r.width + Math.floor(r.width / 2)];
 * console.log(r.score, r.isAnomaly, centre);
 */
export interface ScoreResult {
  /** Raw image score: a patch distance (larger = more anomalous). */
  score: number;
  /** Score mapped to [0, 1] with 0.5 at the calibrated threshold; null when the fit had too few images to calibrate. */
  normalizedScore: number | null;
  /** normalizedScore >= 0.5; null without calibration. */
  isAnomaly: boolean | null;
  /** Anomaly map (patch distances, upsampled and blurred), row-major, `height` x `width`. */
  map: Float32Array;
  /** The input image's width in pixels. */
  width: number;
  /** The input image's height in pixels. */
  height: number;
  /** PNG overlay (jet colour map, 50% blend, threshold contour) when asked with `{ heatmap: 'png' }`. */
  heatmap?: Buffer;
}

/**
 * Options of {@link Engine.score} and {@link Engine.scoreMany}.
 * @example
 * const { heatmap } = await engine.score('frame.png', { heatmap: 'png' });
 * if (heatmap) await import('node:fs/promises').then((fs) => fs.writeFile('frame.heat.png', heatmap));
 */
export interface ScoreOptions {
  /** `'png'`: also return a coloured overlay PNG of the map over the image. */
  heatmap?: 'png' | false;
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
  /** libtorch intra-op threads on this machine (default: the model's `threads` option, 0 = all cores). */
  threads?: number;
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
  /** Batching of `score()` calls: the options, and calls served in how many native batches so far. */
  batching: { maxBatch: number; maxWaitMs: number; calls: number; batches: number };
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
  readonly #native: NativeEngine;
  readonly #calibrationOptions: CalibrationOptions;
  #calibration: Calibration | null = null;
  #queue: Promise<unknown> = Promise.resolve();
  readonly #batcher: ScoreBatcher<RawFrame, NativeScore>;

  private constructor(n: NativeEngine, batching: BatchingOptions | false | undefined, calibrationOptions?: CalibrationOptions) {
    this.#native = n;
    this.#batcher = new ScoreBatcher((task) => this.#enqueue(task), (frames) => n.score(frames), resolveBatching(batching));
    // Models carry their calibration (and its options) as JSON metadata.
    const meta = n.metadata() ? (JSON.parse(n.metadata()) as { calibration?: Calibration; calibrationOptions?: CalibrationOptions }) : {};
    this.#calibration = meta.calibration ?? null;
    this.#calibrationOptions = calibrationOptions ?? meta.calibrationOptions ?? resolveCalibration(undefined);
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
      return new Engine(await native().createEngine(resolved), options.batching, calibration);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * Loads a model saved by {@link Engine.save}. Throws ERR_MODEL_FILE for damaged or foreign files.
   * @example
   * const engine = await Engine.load('part.rcp');
   * console.log(engine.info.fitted, engine.info.bankRows);
   */
  static async load(path: string, options: LoadOptions = {}): Promise<Engine> {
    const stack = new Error();
    try {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'load expects a file path');
      if (options === null || typeof options !== 'object') throw new ReconpatchError('ERR_INVALID_OPTION', 'load options must be an object');
      for (const key of Object.keys(options))
        if (key !== 'batching' && key !== 'threads') throw new ReconpatchError('ERR_INVALID_OPTION', `unknown load option '${key}'`);
      resolveBatching(options.batching);
      const { threads } = options;
      if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 1024))
        throw new ReconpatchError('ERR_INVALID_OPTION', `threads must be an integer in [1, 1024], got ${JSON.stringify(threads)}`);
      const n = await native().loadEngine(path);
      if (threads !== undefined) n.setThreads(threads);
      return new Engine(n, options.batching);
    } catch (err) {
      rethrow(err, stack);
    }
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
   * What this engine holds now (a fresh object on every read).
   * @example
   * if (!engine.info.fitted) await engine.fit(goodImages);
   */
  get info(): EngineInfo {
    const { backboneName, ...rest } = this.#native.info();
    return { backbone: backboneName, calibration: this.#calibration, batching: this.#batcher.stats, ...rest };
  }

  /**
   * Fits on images of good parts. Streams: decodes and embeds `batchSize` images at a time and
   * never holds all decoded images. A failed or aborted fit leaves the engine as it was.
   * Throws ERR_INVALID_IMAGE (naming the image), ERR_EMPTY_TRAINING_SET, ERR_ABORTED.
   * @example
   * const summary = await engine.fit(['good/000.png', 'good/001.png', 'good/002.png', 'good/003.png']);
   */
  fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: FitOptions = {}): Promise<FitSummary> {
    const stack = new Error();
    return this.#exclusive(() => this.#fit(images, options)).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores one image: raw and calibrated score, and the anomaly map at the image's own size.
   * Calls made while the engine is busy are scored together in one native batch (see
   * {@link EngineOptions.batching}); each gets exactly the result it would get alone.
   * Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE.
   * @example
   * const { score, normalizedScore, isAnomaly, map, width, height } = await engine.score('frame.png');
   */
  score(image: ImageInput, options: ScoreOptions = {}): Promise<ScoreResult> {
    const stack = new Error();
    // Decoding and the heatmap run outside the engine's queue, overlapping other calls' native work.
    return toRawFrame(image)
      .then((frame) => this.#batcher.add(frame).then((r) => this.#result(r, frame, options)))
      .catch((err) => rethrow(err, stack));
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
      const batchSize = this.#native.options().batchSize;
      const out: ScoreResult[] = [];
      for (let i = 0; i < images.length; i += batchSize) {
        const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => toRawFrame(img, i + j)));
        const raw = await this.#native.score(frames);
        for (const [j, r] of raw.entries()) out.push(await this.#result(r, frames[j], options));
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

  // Post-processing: calibrated score and the optional heatmap.
  async #result(r: NativeScore, frame: RawFrame, { heatmap }: ScoreOptions): Promise<ScoreResult> {
    const c = this.#calibration;
    const normalizedScore = c ? normalize(r.score, c) : null;
    const result: ScoreResult = { ...r, normalizedScore, isAnomaly: normalizedScore === null ? null : normalizedScore >= 0.5 };
    if (heatmap === 'png') {
      const scaled = new Float32Array(r.map.length);
      if (c) for (let i = 0; i < scaled.length; i++) scaled[i] = normalize(r.map[i], c);
      else {
        // Uncalibrated: the map's own range.
        let lo = Infinity;
        let hi = -Infinity;
        for (const v of r.map) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
        for (let i = 0; i < scaled.length; i++) scaled[i] = hi > lo ? (r.map[i] - lo) / (hi - lo) : 0;
      }
      result.heatmap = await heatmapPng(frame, scaled);
    } else if (heatmap !== undefined && heatmap !== false) {
      throw new ReconpatchError('ERR_INVALID_OPTION', `heatmap must be 'png' or false, got ${JSON.stringify(heatmap)}`);
    }
    return result;
  }

  /**
   * Saves the fitted model to one file (written to a temporary file, then renamed). Throws ERR_NOT_FITTED, ERR_IO.
   * @example
   * await engine.save('part.rcp');
   */
  save(path: string): Promise<void> {
    const stack = new Error();
    return this.#exclusive(async () => {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'save expects a file path');
      await this.#native.save(path);
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
    return this.#exclusive(async () => {
      const f = await this.#native.embed([await toRawFrame(image)]);
      return { data: f.data, rows: f.shape[0], dim: f.shape[1] };
    }).catch((err) => rethrow(err, stack));
  }

  // Runs calls one after another: fit, score and save never interleave on one engine. Score
  // calls made after this one join a later batch, so they see what this call did (a new fit).
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    this.#batcher.seal();
    return this.#enqueue(fn);
  }

  #enqueue<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  // Scores the held-out nominal images and stores the threshold statistics with the model.
  async #calibrate(frames: RawFrame[], onProgress?: (p: Progress) => void) {
    let calibration: Calibration | null = null;
    if (frames.length > 0) {
      const scores: number[] = [];
      const maps: Float32Array[] = [];
      const batchSize = this.#native.options().batchSize;
      for (let i = 0; i < frames.length; i += batchSize) {
        for (const r of await this.#native.score(frames.slice(i, i + batchSize))) {
          scores.push(r.score);
          maps.push(r.map);
        }
        onProgress?.({ stage: 'calibrate', done: Math.min(i + batchSize, frames.length), total: frames.length });
      }
      calibration = calibrate(scores, maps);
    }
    this.#calibration = calibration;
    this.#native.setMetadata(JSON.stringify({ calibration, calibrationOptions: this.#calibrationOptions }));
  }

  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress }: FitOptions): Promise<FitSummary> {
    if (images === null || typeof images !== 'object' || !(Symbol.iterator in images || Symbol.asyncIterator in images))
      throw new ReconpatchError('ERR_INVALID_OPTION', 'fit expects an Iterable or AsyncIterable of images');
    const started = performance.now();
    const total = Array.isArray(images) ? images.length : undefined;
    const batchSize = this.#native.options().batchSize;
    const aborted = () => new ReconpatchError('ERR_ABORTED', 'fit was aborted; the engine keeps its previous state');
    if (signal?.aborted) throw aborted();
    const onAbort = () => this.#native.cancel();
    signal?.addEventListener('abort', onAbort);
    this.#native.fitBegin();
    const { holdout, minImages } = this.#calibrationOptions;
    const heldOut = holdoutPicker(total, holdout, minImages);
    const calibrationFrames: RawFrame[] = [];
    try {
      let done = 0;
      let pending: ImageInput[] = [];
      const flush = async () => {
        const decoded: RawFrame[] = await Promise.all(pending.map((img, j) => toRawFrame(img, done + j)));
        if (signal?.aborted) throw aborted();
        // Held-out nominal images are kept aside for calibration, not put in the bank.
        const frames = decoded.filter((_, j) => !heldOut(done + j));
        try {
          // Held-out images are checked now, so calibration after fitEnd cannot fail on them.
          this.#native.validate(decoded.filter((_, j) => heldOut(done + j)));
          if (frames.length > 0) await this.#native.fitAdd(frames);
        } catch (err) {
          // Name the offending image when the native side rejects one.
          const e = err as { code?: string; message?: string };
          if (e.code === 'ERR_INVALID_IMAGE' && pending.length > 0) {
            throw new ReconpatchError('ERR_INVALID_IMAGE', `fit: one of ${pending.map((p, j) => describeInput(p, done + j)).join(', ')}: ${e.message}`, { cause: err });
          }
          throw err;
        }
        calibrationFrames.push(...decoded.filter((_, j) => heldOut(done + j)));
        done += pending.length;
        pending = [];
        onProgress?.({ stage: 'embed', done, total });
      };
      for await (const image of images as AsyncIterable<ImageInput>) {
        if (signal?.aborted) throw aborted();
        pending.push(image);
        if (pending.length === batchSize) await flush();
      }
      if (pending.length > 0) await flush();
      if (signal?.aborted) throw aborted();
      if (done === 0)
        throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', 'fit received no images; pass at least one image of a good (defect-free) part');
      if (done === calibrationFrames.length) {
        // Everything was held out (a 1-image stream): use it for the bank instead.
        await this.#native.fitAdd(calibrationFrames.splice(0));
      }
      await this.#native.fitEnd(
        onProgress
          ? (stage, d, t, value) => onProgress({ stage: stage as Progress['stage'], done: d, total: t, ...(stage === 'head' ? { loss: value } : {}) })
          : undefined,
      );
      await this.#calibrate(calibrationFrames, onProgress);
      const info = this.#native.info();
      return {
        images: info.trainImages, patches: info.trainPatches, bankRows: info.bankRows,
        calibrationImages: calibrationFrames.length, seconds: (performance.now() - started) / 1000,
      };
    } catch (err) {
      this.#native.fitAbort();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
