/**
 * The Engine: fit on good parts, score new images. Orchestration only; every computation runs
 * in the native addon off the event loop. Calls on one engine are serialised in arrival order.
 */
import { ReconpatchError, rethrow } from './errors.js';
import { type ImageInput, describeInput, toRawFrame } from './images.js';
import { type NativeEngine, type NativeOptions, type RawFrame, native } from './native.js';
import { type EngineOptions, resolveOptions } from './options.js';

/** A fit or scoring stage's progress. `total` is undefined when the input's length is unknown. */
export interface Progress {
  stage: 'embed' | 'head' | 'coreset';
  done: number;
  total?: number;
  /** Head training: the iteration's loss. */
  loss?: number;
}

export interface FitOptions {
  /** Aborts the fit within one batch or coreset step; the engine keeps its previous state. */
  signal?: AbortSignal;
  onProgress?: (p: Progress) => void;
}

export interface FitSummary {
  images: number;
  patches: number;
  bankRows: number;
  seconds: number;
}

/** One image's result. `map` is the anomaly map, row-major `height` x `width`, at the input's size. */
export interface ScoreResult {
  score: number;
  map: Float32Array;
  width: number;
  height: number;
}

export interface EngineInfo {
  backbone: string;
  backboneSha256: string;
  fitted: boolean;
  bankRows: number;
  featureDim: number;
  trainImages: number;
  trainPatches: number;
  device: string;
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
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(n: NativeEngine) {
    this.#native = n;
  }

  /** Builds an engine (loads and validates the backbone). Throws ERR_INVALID_OPTION, ERR_BACKBONE. */
  static async create(options: EngineOptions): Promise<Engine> {
    const stack = new Error();
    try {
      const resolved = resolveOptions(options);
      return new Engine(await native().createEngine(resolved));
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /** Loads a model saved by {@link Engine.save}. Throws ERR_MODEL_FILE for damaged or foreign files. */
  static async load(path: string): Promise<Engine> {
    const stack = new Error();
    try {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'load expects a file path');
      return new Engine(await native().loadEngine(path));
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /** The resolved options this engine runs with (defaults filled in). */
  get options(): NativeOptions {
    return this.#native.options();
  }

  get info(): EngineInfo {
    const i = this.#native.info();
    return {
      backbone: i.backboneName, backboneSha256: i.backboneSha256, fitted: i.fitted, bankRows: i.bankRows,
      featureDim: i.featureDim, trainImages: i.trainImages, trainPatches: i.trainPatches, device: i.device,
    };
  }

  /**
   * Fits on images of good parts. Streams: decodes and embeds `batchSize` images at a time and
   * never holds all decoded images. A failed or aborted fit leaves the engine as it was.
   * Throws ERR_INVALID_IMAGE (naming the image), ERR_EMPTY_TRAINING_SET, ERR_ABORTED.
   */
  fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: FitOptions = {}): Promise<FitSummary> {
    const stack = new Error();
    return this.#exclusive(() => this.#fit(images, options)).catch((err) => rethrow(err, stack));
  }

  /** Scores one image: image score and anomaly map at the image's own size. Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE. */
  score(image: ImageInput): Promise<ScoreResult> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const frame = await toRawFrame(image);
      const [r] = await this.#native.score([frame]);
      return r;
    }).catch((err) => rethrow(err, stack));
  }

  /** Scores several images in native batches; results in input order. */
  scoreMany(images: ImageInput[]): Promise<ScoreResult[]> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const batchSize = this.#native.options().batchSize;
      const out: ScoreResult[] = [];
      for (let i = 0; i < images.length; i += batchSize) {
        const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => toRawFrame(img, i + j)));
        out.push(...(await this.#native.score(frames)));
      }
      return out;
    }).catch((err) => rethrow(err, stack));
  }

  /** Saves the fitted model to one file (written to a temporary file, then renamed). Throws ERR_NOT_FITTED, ERR_IO. */
  save(path: string): Promise<void> {
    const stack = new Error();
    return this.#exclusive(async () => {
      if (typeof path !== 'string' || path === '') throw new ReconpatchError('ERR_INVALID_OPTION', 'save expects a file path');
      await this.#native.save(path);
    }).catch((err) => rethrow(err, stack));
  }

  /** Patch features of one image, `[rows, dim]` (for analysis and tests). */
  embed(image: ImageInput): Promise<{ data: Float32Array; rows: number; dim: number }> {
    const stack = new Error();
    return this.#exclusive(async () => {
      const f = await this.#native.embed([await toRawFrame(image)]);
      return { data: f.data, rows: f.shape[0], dim: f.shape[1] };
    }).catch((err) => rethrow(err, stack));
  }

  // Runs calls one after another: fit, score and save never interleave on one engine.
  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
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
    try {
      let done = 0;
      let pending: ImageInput[] = [];
      const flush = async () => {
        const frames: RawFrame[] = await Promise.all(pending.map((img, j) => toRawFrame(img, done + j)));
        if (signal?.aborted) throw aborted();
        try {
          await this.#native.fitAdd(frames);
        } catch (err) {
          // Name the offending image when the native side rejects one.
          const e = err as { code?: string; message?: string };
          if (e.code === 'ERR_INVALID_IMAGE' && pending.length > 0) {
            throw new ReconpatchError('ERR_INVALID_IMAGE', `fit: one of ${pending.map((p, j) => describeInput(p, done + j)).join(', ')}: ${e.message}`, { cause: err });
          }
          throw err;
        }
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
      await this.#native.fitEnd(
        onProgress
          ? (stage, d, t, value) => onProgress({ stage: stage as Progress['stage'], done: d, total: t, ...(stage === 'head' ? { loss: value } : {}) })
          : undefined,
      );
      const info = this.#native.info();
      return { images: info.trainImages, patches: info.trainPatches, bankRows: info.bankRows, seconds: (performance.now() - started) / 1000 };
    } catch (err) {
      this.#native.fitAbort();
      throw err;
    } finally {
      signal?.removeEventListener('abort', onAbort);
    }
  }
}
