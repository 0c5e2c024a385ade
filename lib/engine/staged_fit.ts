/**
 * The first half of a fit transaction, shared by `Engine.fit` (one native engine) and
 * `Ensemble.fit` (one per member, in lockstep): one pass over the input, each batch decoded once,
 * embedded into every engine (`fitAdd`), then every engine builds its pending model (`fitEnd`),
 * scoring fit images against it without their own patches (leave-one-image-out) on the way. The
 * live models keep serving throughout. The caller then calibrates on that nominal evidence
 * ({@link nominalEvidence}) and commits (`fitCommit`), or calls {@link abortFit}: a failure or
 * abort at any point leaves every engine as it was. With `calibration.holdout` > 0 a share of the
 * images is set aside instead (not embedded) and scored against the pending models. A distributed
 * fit's shard ({@link stageShard}) is the same staging handed over as bytes. A little over ~400
 * lines: the fit, the shard and the calibration evidence share one embedding loop and FitControl.
 */
import { type NominalEvidence, holdoutPicker, mapStats } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { type DecodePolicy, type ImageInput, describeInput, toRawFrame } from '../io/images.js';
import type { NativeEngine, RawFrame } from '../native.js';
import type { CalibrationOptions } from '../options.js';
import { type ImageSizes, mergeSizes } from './model_info.js';

/**
 * A fit or scoring stage's progress. `total` is undefined when the input's length is unknown.
 * @example
 * await engine.fit(goodImages, { onProgress: (p: Progress) => console.log(p.stage, p.done, p.total ?? '?', p.loss ?? '') });
 */
export interface Progress {
  /**
   * `'embed'` (images), `'head'` (training iterations), `'coreset'` (selected rows), `'check'`
   * (`head: 'auto'`: held-out and synthetic images scored by both pending models), `'calibrate'`
   * (nominal images scored for the threshold).
   */
  stage: 'embed' | 'head' | 'coreset' | 'check' | 'calibrate';
  /** Units of this stage done so far. */
  done: number;
  /** Units in this stage, when known. */
  total?: number;
  /** Head training: the iteration's loss. */
  loss?: number;
}

/** The share held out to calibrate a fit with `maxStagedPatches` when `calibration.holdout` is 0. */
export const BUDGET_HOLDOUT = 0.1;

/**
 * The smallest staged-patch budget taken (0, no bound, aside). Each reduce keeps a coreset of half
 * the budget, so 512 keeps 256 rows: a 16 x 16 patch grid, the patches of one 128 x 128 image at
 * the backbones' stride of 8. A smaller bank cannot describe even one small image of a good part
 * (2 would leave a 1-row bank): such a budget is a mistake, refused rather than obeyed.
 */
export const MIN_STAGED_PATCHES = 512;

/** `maxStagedPatches` checked: 0 or an integer of at least {@link MIN_STAGED_PATCHES}. Throws ERR_INVALID_OPTION. */
export function checkMaxStagedPatches(value: unknown): number {
  if (!(Number.isInteger(value) && (value === 0 || (value as number) >= MIN_STAGED_PATCHES)))
    throw new ReconpatchError('ERR_INVALID_OPTION',
      `maxStagedPatches must be 0 (no bound) or an integer of at least ${MIN_STAGED_PATCHES}, got ${JSON.stringify(value)}: ` +
      `each reduce keeps half the budget, and fewer than ${MIN_STAGED_PATCHES / 2} rows cannot describe even one 128 x 128 image (${MIN_STAGED_PATCHES / 2} patches)`);
  return value as number;
}

/**
 * A warning when a staged-patch budget turned out smaller than two images' patches (known only
 * once the images are seen): each reduce then kept fewer rows than one fit image has.
 */
export function stagedBudgetWarning(maxStagedPatches: number, patches: number, images: number): string[] {
  const perImage = images > 0 ? Math.ceil(patches / images) : 0;
  if (maxStagedPatches === 0 || maxStagedPatches >= 2 * perImage) return [];
  return [`maxStagedPatches ${maxStagedPatches} is less than two images' patches (${perImage} per image here): each reduce kept fewer rows than one image has; ` +
    `the bank may miss normal detail (use at least ${2 * perImage})`];
}

export interface StageFitOptions {
  /** 'fit' builds new models; 'update' grows the live ones. */
  mode: 'fit' | 'update';
  /** Fit only: bound on the patches staged per engine (0: none; else checked by {@link checkMaxStagedPatches}). */
  maxStagedPatches: number;
  signal?: AbortSignal;
  /** Progress of engine `member` (undefined for the shared 'embed' stage). */
  onProgress?: (p: Progress, member: number | undefined) => void;
  calibration: CalibrationOptions;
  batchSize: number;
  /** The limits every image is decoded within (for all the engines). */
  input: DecodePolicy;
  /** `head: 'auto'`: picks, from the fit's total (undefined: unknown), the images held out for the head check. */
  headCheck?: (total: number | undefined) => (index: number) => boolean;
  /**
   * Fit only: features staged by other engines ({@link stageShard}) that the models are built
   * from. Then every image is held out: the images are the good images calibration scores.
   */
  shards?: Iterable<Uint8Array> | AsyncIterable<Uint8Array>;
}

export interface StagedFit {
  /** Images embedded into the pending models. */
  images: number;
  /** The held-out nominal images, decoded, to calibrate with. */
  calibrationFrames: RawFrame[];
  /** The good images held out for the head check (`headCheck`), decoded. */
  checkFrames: RawFrame[];
  /** The range of the sizes of every image the fit saw (the model's training-set summary). */
  sizes: ImageSizes;
}

/**
 * Guards the user's callbacks and the abort signal for one fit: a throwing callback cancels the
 * native work and fails the fit with ERR_CALLBACK (the thrown error as `cause`), never silently.
 */
export class FitControl {
  #callbackError: unknown;
  #failed = false;
  readonly #engines: NativeEngine[];
  readonly #signal?: AbortSignal;
  readonly #what: string;
  readonly #verb: string;
  readonly #onAbort = () => this.#cancel();

  /** `what`: 'engine' or 'ensemble'; `verb`: 'fit' or 'update' (for messages). */
  constructor(engines: NativeEngine[], signal: AbortSignal | undefined, what: string, verb = 'fit') {
    this.#engines = engines;
    this.#signal = signal;
    this.#what = what;
    this.#verb = verb;
    signal?.addEventListener('abort', this.#onAbort);
  }

  /** Calls the user's callback; if it throws, remembers why and cancels the native work. */
  call<A extends unknown[]>(fn: ((...a: A) => void) | undefined, ...args: A): void {
    if (!fn || this.#failed) return;
    try {
      fn(...args);
    } catch (err) {
      this.#failed = true;
      this.#callbackError = err;
      this.#cancel();
    }
  }

  /** Throws ERR_CALLBACK or ERR_ABORTED when the fit must stop. */
  check(): void {
    if (this.#failed) throw this.callbackFailure();
    if (this.#signal?.aborted) throw this.aborted();
  }

  /** The error to throw for `err` caught from native work: the callback's failure when there was one. */
  explain(err: unknown): unknown {
    if (this.#failed) return this.callbackFailure();
    if (this.#signal?.aborted && (err as { code?: string })?.code === 'ERR_ABORTED') return this.aborted();
    return err;
  }

  callbackFailure(): ReconpatchError {
    const e = this.#callbackError;
    return new ReconpatchError('ERR_CALLBACK', `${this.#verb} stopped: the onProgress callback threw (${e instanceof Error ? e.message : String(e)}); the ${this.#what} keeps its previous state`, { cause: e });
  }

  aborted(): ReconpatchError {
    return new ReconpatchError('ERR_ABORTED', `${this.#verb} was aborted; the ${this.#what} keeps its previous state`);
  }

  dispose(): void {
    this.#signal?.removeEventListener('abort', this.#onAbort);
  }

  #cancel(): void {
    for (const e of this.#engines) e.cancel();
  }
}

/** Drops every engine's staged features and pending model. */
export function abortFit(engines: NativeEngine[]): void {
  for (const e of engines) e.fitAbort();
}

/** See the module comment. Throws ERR_INVALID_OPTION, ERR_INPUT, ERR_INVALID_IMAGE, ERR_EMPTY_TRAINING_SET, ERR_ABORTED, ERR_CALLBACK (ERR_MODEL_FILE for a damaged shard). */
export async function stageFit(
  engines: NativeEngine[],
  images: Iterable<ImageInput> | AsyncIterable<ImageInput>,
  control: FitControl,
  { mode, maxStagedPatches, onProgress, calibration, batchSize, input, headCheck, shards }: StageFitOptions,
): Promise<StagedFit> {
  checkIterable(images, mode);
  control.check();
  const total = Array.isArray(images) ? images.length : undefined;
  // A fit within a staged-patch budget reduces staged images to part of their patches, so they
  // cannot be scored leave-one-out: it holds out a share of the images instead (10% unless set).
  // A fit from shards holds out every image: its banks come from the shards.
  const holdout = calibration.holdout > 0 ? calibration.holdout : maxStagedPatches > 0 ? BUDGET_HOLDOUT : 0;
  const heldOut = shards ? () => true : calibration.enabled ? holdoutPicker(total, holdout, calibration.minImages) : () => false;
  const leaveOut = calibration.enabled && holdout === 0 && !shards ? calibration.maxImages : 0;
  const forCheck = headCheck ? headCheck(total) : () => false;
  for (const e of engines) e.fitBegin(mode, maxStagedPatches);
  let fromShards = 0;
  let sizes: ImageSizes | null = null;
  let k = 0;
  for await (const bytes of shards ? inputOf(shards, 'shards') : []) {
    if (!(bytes instanceof Uint8Array)) throw new ReconpatchError('ERR_INVALID_OPTION', `shard ${k} is not a Uint8Array (the bytes Engine.stage returned)`);
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    try {
      for (const e of engines) {
        const r = await e.fitAddStaged(buffer, `shard ${k}`);
        if (e === engines[0]) {
          fromShards += r.images;
          sizes = mergeSizes(sizes, shardSizes(r.metadata));
        }
      }
    } catch (err) {
      throw control.explain(err);
    }
    k++;
    control.call(onProgress, { stage: 'embed', done: fromShards, total: undefined }, undefined);
    control.check();
  }
  if (shards && k === 0) throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', `${mode} received no shards; pass the bytes of at least one Engine.stage call`);
  const role = (i: number) => (heldOut(i) ? 'calibrate' : forCheck(i) ? 'check' : 'fit');
  const embedded = await embedImages(engines, images, control, { mode, batchSize, input, role, onProgress });
  if (embedded.done === 0 && fromShards === 0)
    throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', `${mode} received no images; pass at least one image of a good (defect-free) part`);
  const { calibrationFrames, checkFrames } = embedded;
  let count = embedded.embedded + fromShards;
  if (count === 0) {
    // Everything was held out (a 1-image stream): use it for the banks instead.
    const all = [...calibrationFrames.splice(0), ...checkFrames.splice(0)];
    for (const e of engines) await e.fitAdd(all);
    count = all.length;
  }
  for (const [m, e] of engines.entries()) {
    let received = 0;
    try {
      const queued = await e.fitEnd((stage, d, t, value) => {
        received++;
        control.call(onProgress, { stage: stage as Progress['stage'], done: d, total: t, ...(stage === 'head' ? { loss: value } : {}) }, m);
      }, leaveOut);
      // Progress calls travel apart from the result: take them all before going on.
      while (received < queued) await new Promise((resolve) => setImmediate(resolve));
    } catch (err) {
      throw control.explain(err);
    }
    control.check();
  }
  return { images: count, calibrationFrames, checkFrames, sizes: (shards ? mergeSizes(sizes, embedded.sizes) : embedded.sizes) ?? embedded.sizes };
}

/**
 * What `Engine.stage` hands over: the staged features as bytes, and what they hold.
 * @example
 * const { bytes, images, rows, patches } = await engine.stage(goodImages, { maxStagedPatches: 65_536 });
 * console.log(`${images} images: ${rows} of ${patches} patch rows, ${bytes.length} bytes`);
 */
export interface StagedShard {
  /** The staged features (a versioned, checksummed file: `Engine.fit(images, { shards })` on an engine with the same options reads it). */
  bytes: Buffer;
  /** Images embedded. */
  images: number;
  /** Their patches (also those a budget reduced away). */
  patches: number;
  /** Feature rows the bytes carry (at most `maxStagedPatches` when set). */
  rows: number;
  /** The range of the images' sizes. */
  sizes: ImageSizes;
}

/**
 * A distributed fit's shard: the images embedded into `engine`'s staging (reduced within
 * `maxStagedPatches` as a bounded fit reduces) and handed over as bytes; the engine's model is
 * untouched. Throws as stageFit does.
 */
export async function stageShard(
  engine: NativeEngine, images: Iterable<ImageInput> | AsyncIterable<ImageInput>, control: FitControl,
  { maxStagedPatches, batchSize, input, onProgress }: Pick<StageFitOptions, 'maxStagedPatches' | 'batchSize' | 'input' | 'onProgress'>,
): Promise<StagedShard> {
  checkIterable(images, 'stage');
  control.check();
  engine.fitBegin('fit', maxStagedPatches);
  try {
    const r = await embedImages([engine], images, control, { mode: 'stage', batchSize, input, role: () => 'fit', onProgress });
    if (r.done === 0) throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', 'stage received no images; pass at least one image of a good (defect-free) part');
    const { bytes, images: count, patches, rows } = await engine.fitTakeStaged(JSON.stringify({ sizes: r.sizes }));
    return { bytes, images: count, patches, rows, sizes: r.sizes };
  } catch (err) {
    engine.fitAbort();
    throw control.explain(err);
  }
}

/** The image size range a shard's metadata records (null when it records none). */
function shardSizes(metadata: string): ImageSizes | null {
  try {
    const s = (JSON.parse(metadata) as { sizes?: ImageSizes }).sizes;
    return s && ['minWidth', 'maxWidth', 'minHeight', 'maxHeight'].every((k) => Number.isInteger(s[k as keyof ImageSizes])) ? s : null;
  } catch {
    return null;
  }
}

function checkIterable(images: unknown, verb: string): asserts images is Iterable<ImageInput> | AsyncIterable<ImageInput> {
  if (images === null || typeof images !== 'object' || !(Symbol.iterator in images || Symbol.asyncIterator in images))
    throw new ReconpatchError('ERR_INVALID_OPTION', `${verb} expects an Iterable or AsyncIterable of images`);
}

interface EmbedOptions {
  mode: string;
  batchSize: number;
  input: DecodePolicy;
  /** Where image `index` goes: the banks, calibration, or the head check. */
  role: (index: number) => 'fit' | 'calibrate' | 'check';
  onProgress?: (p: Progress, member: number | undefined) => void;
}

/**
 * One pass over the input: each batch decoded once and embedded into every engine (`fitAdd`),
 * the images held out (by `role`) decoded and kept aside.
 */
async function embedImages(engines: NativeEngine[], images: Iterable<ImageInput> | AsyncIterable<ImageInput>, control: FitControl, { mode, batchSize, input, role: roleOf, onProgress }: EmbedOptions) {
  const total = Array.isArray(images) ? images.length : undefined;
  const calibrationFrames: RawFrame[] = [];
  const checkFrames: RawFrame[] = [];
  const sizes: ImageSizes = { minWidth: Infinity, maxWidth: 0, minHeight: Infinity, maxHeight: 0 };
  let done = 0;
  let embedded = 0;
  let pending: ImageInput[] = [];
  const flush = async () => {
    const decoded: RawFrame[] = await Promise.all(pending.map((img, j) => toRawFrame(img, done + j, input)));
    control.check();
    for (const { width, height } of decoded) {
      sizes.minWidth = Math.min(sizes.minWidth, width);
      sizes.maxWidth = Math.max(sizes.maxWidth, width);
      sizes.minHeight = Math.min(sizes.minHeight, height);
      sizes.maxHeight = Math.max(sizes.maxHeight, height);
    }
    // Held-out nominal images are kept aside for calibration, not put in the banks.
    // Calibration's picks first; the head check takes its own from the rest.
    const role = decoded.map((_, j) => roleOf(done + j));
    const keep = decoded.filter((_, j) => role[j] === 'fit');
    const aside = decoded.filter((_, j) => role[j] === 'calibrate');
    const checked = decoded.filter((_, j) => role[j] === 'check');
    try {
      for (const e of engines) {
        // Held-out images are checked now, so that calibration cannot fail on them later.
        e.validate(aside);
        e.validate(checked);
        if (keep.length > 0) await e.fitAdd(keep);
      }
    } catch (err) {
      // Name the offending image when the native side rejects one.
      const e = err as { code?: string; message?: string };
      if (e.code === 'ERR_INVALID_IMAGE') {
        throw new ReconpatchError('ERR_INVALID_IMAGE', `${mode}: one of ${pending.map((p, j) => describeInput(p, done + j)).join(', ')}: ${e.message}`, { cause: err });
      }
      throw control.explain(err);
    }
    calibrationFrames.push(...aside);
    checkFrames.push(...checked);
    embedded += keep.length;
    done += pending.length;
    pending = [];
    control.call(onProgress, { stage: 'embed', done, total }, undefined);
    control.check();
  };
  for await (const image of inputOf(images)) {
    control.check();
    pending.push(image);
    if (pending.length === batchSize) await flush();
  }
  if (pending.length > 0) await flush();
  control.check();
  return { done, embedded, calibrationFrames, checkFrames, sizes };
}

/**
 * The input, with an error thrown by the caller's own iterable reported as ERR_INPUT (its error
 * as `cause`) rather than as if reconpatch had failed.
 */
async function* inputOf<T>(images: Iterable<T> | AsyncIterable<T>, what = 'images'): AsyncGenerator<T> {
  const it: Iterator<T> | AsyncIterator<T> = Symbol.asyncIterator in images ? (images as AsyncIterable<T>)[Symbol.asyncIterator]() : (images as Iterable<T>)[Symbol.iterator]();
  let finished = false;
  try {
    for (;;) {
      let r: IteratorResult<T>;
      try {
        r = await it.next();
      } catch (err) {
        finished = true;
        throw new ReconpatchError('ERR_INPUT', `fit: the ${what} iterable threw (${err instanceof Error ? err.message : String(err)})`, { cause: err });
      }
      if (r.done) {
        finished = true;
        return;
      }
      yield r.value;
    }
  } finally {
    if (!finished) await it.return?.(); // the fit stopped early: let the source clean up
  }
}

/**
 * The nominal evidence of a staged fit, per engine and per image (the same images, in the same
 * order, for every engine): the leave-one-image-out results of `fitEnd`, or the held-out images
 * scored against the pending models. Progress of the latter is reported as stage 'calibrate'.
 */
export async function nominalEvidence(
  engines: NativeEngine[], staged: StagedFit, control: FitControl, batchSize: number, onProgress?: (p: Progress) => void,
): Promise<NominalEvidence[][]> {
  const frames = staged.calibrationFrames;
  if (frames.length === 0) {
    // Leave-one-image-out: keep the images every engine scored (all of them, unless an engine's
    // whole bank came from one image).
    const perEngine = engines.map((e) => new Map(e.leaveOut().map((r) => [r.input, r])));
    const inputs = [...perEngine[0].keys()].filter((i) => perEngine.every((m) => m.has(i)));
    return perEngine.map((m) => inputs.map((i) => m.get(i) as NominalEvidence));
  }
  const out: NominalEvidence[][] = engines.map(() => []);
  for (let i = 0; i < frames.length; i += batchSize) {
    control.check();
    const batch = frames.slice(i, i + batchSize);
    for (const [k, e] of engines.entries()) for (const r of await e.scorePending(batch)) out[k].push({ score: r.score, ...mapStats(r.map) });
    control.call(onProgress, { stage: 'calibrate', done: Math.min(i + batchSize, frames.length), total: frames.length });
  }
  control.check();
  return out;
}
