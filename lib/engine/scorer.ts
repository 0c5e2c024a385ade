/**
 * What `Engine` and `Ensemble` share, written once: the call queue, scoring (one image, many, a
 * stream), thresholds (`calibrate`, `setThreshold`), `save` / `saveBytes`, `dispose`. A subclass says how a
 * batch of decoded frames is scored (`scoreFrames`), which numbers of a raw output a threshold
 * applies to (`decisionValues`), how a raw output becomes its public result (`finish`), and how
 * the model is encoded. The fit transaction both run is ./transaction.ts.
 */
import { Duplex } from 'node:stream';

import type { Calibration } from '../calibration.js';
import { ReconpatchError, rethrow } from '../errors.js';
import type { ImageInput } from '../io/images.js';
import type { RawFrame } from '../native.js';
import type { CalibrationOptions } from '../options.js';
import { type CalibrateOptions, calibrationFromResults, checkThreshold, manualCalibration } from './decisions.js';
import { type ModelRef, type StoredModel, modelVersion } from './model_info.js';
import { writeFileAtomically } from './model_file.js';
import { orderedMap } from './ordered.js';
import { CallQueue } from './queue.js';
import { type ScoreOptions, type ScoreResult, checkScoreOptions, withLabel } from './results.js';

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

/** One item of a score stream: a result of type `R`, or (with `onError: 'yield'`) an error, with the input's position. */
export type StreamItem<R> = (R & { index: number; error?: undefined }) | { index: number; error: ReconpatchError };

/**
 * The shared half of Engine and Ensemble (see the file comment). `Result` is the public result of
 * one image; `Raw` what one native batch gives per image before post-processing.
 */
export abstract class Scorer<Result extends ScoreResult, Raw> {
  readonly #queue = new CallQueue();
  // Set by the first dispose(): its promise, answered again by later calls.
  #disposed: Promise<void> | null = null;
  /** The thresholds results are judged by (kept with the model). */
  protected calibration: Calibration | null = null;
  /** How nominal evidence becomes a threshold (set at create, kept with the model). */
  protected readonly calibrationOptions: CalibrationOptions;
  /** The model's identity as its META keeps it (./model_info.ts); null before a fit, or from an older file. */
  protected model: StoredModel | null = null;
  /** The live model's content hash; null before a fit. */
  protected hash: string | null = null;
  #ref: { hash: string | null; calibration: Calibration | null; ref: ModelRef } | null = null;

  protected constructor(calibrationOptions: CalibrationOptions) {
    this.calibrationOptions = calibrationOptions;
  }

  /** 'engine' or 'ensemble' (for messages). */
  protected abstract readonly what: 'engine' | 'ensemble';
  /** Images per native batch. */
  protected abstract batchSize(): number;
  /** Decodes one input within this model's input limits; `index` names it in errors. */
  protected abstract decode(image: ImageInput, index?: number): Promise<RawFrame>;
  /** Scores decoded frames with the live model, one raw output per frame, in order. */
  protected abstract scoreFrames(frames: RawFrame[]): Promise<Raw[]>;
  /** The score and map of a raw output that thresholds apply to (an ensemble's are fused). */
  protected abstract decisionValues(raw: Raw): { score: number; map: Float32Array };
  /** A raw output -> the public result (calibrated score, verdict, heatmap when asked). */
  protected abstract finish(raw: Raw, frame: RawFrame, options: ScoreOptions): Promise<Result>;
  /** Throws ERR_NOT_FITTED when there is no model to score or threshold with. */
  protected abstract requireFitted(): void;
  /** The model as the bytes of its file. */
  protected abstract encode(): Promise<Buffer>;
  /** Frees the native memory (called once, from the queue: no call of this model is running). */
  protected abstract release(): Promise<void>;

  /** Throws ERR_DISPOSED once `dispose()` was called (for the getters and calls that do not queue). */
  protected checkAlive(): void {
    if (this.#disposed) throw new ReconpatchError('ERR_DISPOSED', `this ${this.what} was disposed (dispose() was called); create or load a new one to go on`);
  }

  /** The model results name (its version hashed once per model and thresholds, not per result). */
  protected modelRef(): ModelRef {
    if (this.#ref?.hash !== this.hash || this.#ref.calibration !== this.calibration)
      this.#ref = { hash: this.hash, calibration: this.calibration, ref: { id: this.model?.id ?? null, version: this.hash ? modelVersion(this.hash, this.calibration) : '' } };
    return { ...this.#ref.ref, id: this.model?.id ?? null };
  }

  /** Keeps a new calibration (an engine also writes it into its model's metadata). */
  protected setCalibration(calibration: Calibration): void {
    this.calibration = calibration;
  }

  /**
   * Runs one call of this model after every call made before it: fit, score and save never
   * interleave. Rejects (without running `fn`) when the model was disposed.
   */
  protected exclusive<T>(fn: () => Promise<T>): Promise<T> {
    try {
      this.checkAlive();
    } catch (err) {
      return Promise.reject(err);
    }
    return this.#queue.run(fn);
  }

  /**
   * Frees the model's native memory (bank, backbone, head; every member's for an ensemble) now,
   * rather than whenever the garbage collector gets to it: for services that load and drop models.
   * Calls made before `dispose()` finish first (it waits for them); every call made after it,
   * `info` and `options` included, throws ERR_DISPOSED. Idempotent: later calls return the same
   * promise.
   * @example
   * const old = await Engine.load('part-v1.rcp');
   * // ... serve with it, then switch to v2:
   * await old.dispose();
   */
  dispose(): Promise<void> {
    this.#disposed ??= this.#queue.run(() => this.release());
    return this.#disposed;
  }

  /**
   * Scores one image: raw and calibrated score, the verdict, and the anomaly map at the image's own
   * size. The call takes its place among the model's calls when it is made (a score made before a
   * fit sees the old model), while its image is still being decoded: decoding overlaps other calls.
   * An engine scores calls made while it is busy together in one native batch (see
   * {@link EngineOptions.batching}); each gets exactly the result it would get alone.
   * Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE, ERR_INVALID_OPTION.
   * @example
   * const { score, normalizedScore, isAnomaly, map, width, height } = await engine.score('frame.png');
   */
  score(image: ImageInput, options: ScoreOptions = {}): Promise<Result> {
    const stack = new Error();
    try {
      this.checkAlive();
      checkScoreOptions(options);
    } catch (err) {
      return Promise.reject(err).catch((e) => rethrow(e, stack));
    }
    const frame = this.decode(image);
    frame.catch(() => undefined); // reported by the queued call, to this call only
    return this.scoreQueued(frame)
      .then(async (raw) => this.finish(raw, await frame, withLabel(options, image)))
      .catch((err) => rethrow(err, stack));
  }

  /** One frame (being decoded) scored in its place among the calls; an engine batches these. */
  protected scoreQueued(frame: Promise<RawFrame>): Promise<Raw> {
    return this.exclusive(async () => {
      this.requireFitted();
      return (await this.scoreFrames([await frame]))[0];
    });
  }

  /**
   * Scores several images in native batches; results in input order. Throws ERR_NOT_FITTED,
   * ERR_INVALID_IMAGE, ERR_INVALID_OPTION (not an array).
   * @example
   * const results = await engine.scoreMany(['a.png', 'b.png']);
   * const worst = Math.max(...results.map((r) => r.score));
   */
  scoreMany(images: ImageInput[], options: ScoreOptions = {}): Promise<Result[]> {
    const stack = new Error();
    return this.exclusive(async () => {
      if (!Array.isArray(images)) throw new ReconpatchError('ERR_INVALID_OPTION', 'scoreMany expects an array of images');
      checkScoreOptions(options);
      this.requireFitted();
      const out: Result[] = [];
      for await (const { frames, raws } of this.batches(images)) for (const [j, r] of raws.entries()) out.push(await this.finish(r, frames[j], withLabel(options, images[out.length])));
      return out;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores any Iterable or AsyncIterable of images, yielding results in input order with at most
   * `concurrency` images in flight (backpressure: inputs are pulled only when there is room).
   * Per-item errors end the stream (`'throw'`, default) or are yielded as `{ index, error }`
   * (`'yield'`). Throws ERR_INVALID_OPTION for bad options or input, ERR_ABORTED when `signal` aborts.
   * @example
   * for await (const r of engine.scoreStream(goodImages, { onError: 'yield' })) {
   *   if (r.error) console.error(r.index, r.error.code);
   *   else if (r.isAnomaly) console.log('defect in image', r.index);
   * }
   */
  async *scoreStream(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: ScoreStreamOptions = {}): AsyncGenerator<StreamItem<Result>> {
    this.checkAlive();
    const { concurrency = 2, signal, onError = 'throw', heatmap } = options;
    const outcomes = orderedMap(images, (image) => this.score(image, { heatmap }), { concurrency, signal, onError, name: 'scoreStream', items: 'images' });
    for await (const o of outcomes) yield 'error' in o ? { index: o.index, error: o.error } : ({ ...o.result, index: o.index } as StreamItem<Result>);
  }

  /**
   * The same as {@link Engine.scoreStream} as an object-mode Duplex for `stream.pipeline()`:
   * images in, stream items ({@link ScoreStreamItem}) out.
   * @example
   * const { pipeline } = await import('node:stream/promises');
   * const { Readable, Writable } = await import('node:stream');
   * await pipeline(Readable.from(goodImages), engine.createScoreStream({ concurrency: 2 }),
   *   new Writable({ objectMode: true, write: (item: ScoreStreamItem, _enc, done) => { console.log(item.index); done(); } }));
   */
  createScoreStream(options: ScoreStreamOptions = {}): Duplex {
    const scoreStream = (source: AsyncIterable<ImageInput>) => this.scoreStream(source, options);
    return Duplex.from(async function* (source: AsyncIterable<ImageInput>) {
      yield* scoreStream(source);
    });
  }

  /**
   * Sets the decision thresholds from images scored now with the fitted model, and keeps them with
   * the model (saved by `save`). With `labels` (1 = defective, 0 = good; at least one defective):
   * the image threshold that maximises F1 on them (`objective: 'f1'`, the default) or the highest
   * one that reaches `objective: { recall }`; the pixel thresholds stay the fit's. Without labels
   * the images are taken as good parts and the nominal rule of the fit is applied to them. An
   * ensemble's thresholds are in fused units and its normalisers stay.
   * Throws ERR_NOT_FITTED, ERR_INVALID_OPTION, ERR_INVALID_IMAGE.
   * @example
   * const c = await engine.calibrate(['val/good1.png', 'val/crack1.png'], { labels: [0, 1], objective: { recall: 0.95 } });
   * console.log(c.threshold, c.validation?.recall);
   */
  calibrate(images: ImageInput[], options: CalibrateOptions = {}): Promise<Calibration> {
    const stack = new Error();
    return this.exclusive(async () => {
      if (!Array.isArray(images) || images.length === 0) throw new ReconpatchError('ERR_INVALID_OPTION', 'calibrate expects a non-empty array of images');
      this.requireFitted();
      const results: { score: number; map: Float32Array }[] = [];
      for await (const { raws } of this.batches(images)) for (const r of raws) results.push(this.decisionValues(r));
      const calibration = calibrationFromResults(results, options, this.calibration, this.calibrationOptions.falseAlarmRate);
      this.setCalibration(calibration);
      return { ...calibration };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Sets the image threshold by hand (raw score units, as `score` and `info.calibration.threshold`;
   * an ensemble's fused units, nominal parts about 0..1), and optionally the pixel threshold of
   * regions and contours; kept with the model. Takes its place among the model's calls (a score
   * made before it uses the old threshold). Throws ERR_INVALID_OPTION, ERR_NOT_FITTED.
   * @example
   * await engine.setThreshold(engine.info.calibration!.threshold * 0.9); // flag more
   */
  setThreshold(threshold: number, options: { pixelThreshold?: number } = {}): Promise<void> {
    const stack = new Error();
    return this.exclusive(async () => {
      checkThreshold(threshold, options);
      this.requireFitted();
      this.setCalibration(manualCalibration(this.calibration, threshold, options.pixelThreshold));
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Saves the fitted model to one file (written to a temporary file, fsynced, then renamed, so an
   * existing file is never half-overwritten). Throws ERR_INVALID_OPTION, ERR_NOT_FITTED, ERR_IO.
   * @example
   * await engine.save('part.rcp');
   */
  save(path: string): Promise<void> {
    const stack = new Error();
    return this.exclusive(async () => {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'save expects a file path');
      await writeFileAtomically(path, await this.encode(), this.what === 'engine' ? 'model' : 'ensemble model');
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * The fitted model as the bytes of its model file (what `save` writes), for storage elsewhere;
   * `loadBytes` reads them. Throws ERR_NOT_FITTED.
   * @example
   * const bytes: Buffer = await engine.saveBytes();
   */
  saveBytes(): Promise<Buffer> {
    const stack = new Error();
    return this.exclusive(() => this.encode()).catch((err) => rethrow(err, stack));
  }

  /** Decodes a batch at a time (each image once), then scores it with the live model. */
  protected async *batches(images: ImageInput[]): AsyncGenerator<{ frames: RawFrame[]; raws: Raw[] }> {
    const batchSize = this.batchSize();
    for (let i = 0; i < images.length; i += batchSize) {
      const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => this.decode(img, i + j)));
      yield { frames, raws: await this.scoreFrames(frames) };
    }
  }
}
