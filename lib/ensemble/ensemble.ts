/**
 * Ensembles: several engines (one backbone, head and memory bank each) fitted on the same images,
 * whose raw scores and maps are fused by per-member min-max normalisation and averaging
 * (./fusion.ts). The fit's nominal evidence (every member scores the same fit images leave-one-
 * image-out, or the held-out images) sets each member's min / max; the nominal rule of
 * calibration.ts on the fused evidence then gives the threshold, `normalizedScore` and `isAnomaly`.
 *
 * The API is a separate `Ensemble` class (`Ensemble.create({ members: [...] })`) rather than
 * `Engine.create({ backbone: [a, b] })`: members may differ in more than the backbone (head,
 * resize, seed), and results carry per-member scores, so one engine's option list would not fit.
 *
 * A fit runs every member's fit transaction in lockstep over one pass of the input (each batch
 * decoded once; ../engine/staged_fit.ts), calibrates against the members' pending models and
 * commits them together: a failure or abort leaves every member as it was. One model file
 * (./container.ts) holds each member's model-file bytes.
 *
 * Longer than ~400 lines because it mirrors Engine's public API method for method; the fusion
 * maths, the container and the shared engine machinery live in their own files.
 */
import { type Calibration, calibrateNominal, poolNominal, upgradeCalibration } from '../calibration.js';
import { type CalibrateOptions, calibrationFromResults, checkThreshold, manualCalibration, missingCalibrationWarning } from '../engine/decisions.js';
import { Engine, type EngineInfo, type FitSummary, type ScoreStreamOptions, type UpdateOptions, type UpdateSummary, nativeOf } from '../engine/engine.js';
import { readModelFile, writeFileAtomically } from '../engine/model_file.js';
import { orderedMap } from '../engine/ordered.js';
import { CallQueue } from '../engine/queue.js';
import { type ScoreOptions, type ScoreResult, checkScoreOptions, finishResult } from '../engine/results.js';
import { FitControl, type Progress, abortFit, checkMaxStagedPatches, nominalEvidence, stageFit, stagedBudgetWarning } from '../engine/staged_fit.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { type DecodePolicy, type ImageInput, type InputOptions, resolveInput, toRawFrame } from '../io/images.js';
import { openRegularFile } from '../io/regular_file.js';
import type { NativeOptions, RawFrame } from '../native.js';
import { type CalibrationOptions, type EngineOptions, headAuto, resolveCalibration, storedCalibrationOptions } from '../options.js';
import { MAGIC, MAX_MEMBERS, type EnsembleMeta, buildContainer, parseContainer } from './container.js';
import { type MemberOutputs, type MemberRange, fuseEvidence, fuseWithRanges, memberRange } from './fusion.js';

export { fuseTestMinMax, minMax } from './fusion.js';
export type { MemberOutputs, MemberRange } from './fusion.js';

/**
 * Options for {@link Ensemble.create}.
 * @example
 * const options: EnsembleOptions = {
 *   members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }],
 *   calibration: { holdout: 0.2 },
 * };
 * const ensemble = await Ensemble.create(options);
 */
export interface EnsembleOptions {
  /** One engine's options per member (each its own backbone, head, bank). Calibration is set on the ensemble, not here. */
  members: Omit<EngineOptions, 'calibration'>[];
  /**
   * As {@link EngineOptions.calibration}: the nominal evidence (fit images scored leave-one-image-out
   * by every member, or held-out images) that sets each member's min / max and the threshold. At
   * least 2 images are needed for fused scores. `false`: only {@link Ensemble.scoreMembers} works
   * (test-set evaluation).
   */
  calibration?: EngineOptions['calibration'];
  /** What inputs are accepted, for every member (see {@link EngineOptions.input}); runtime only: pass it again to `Ensemble.load`. */
  input?: InputOptions;
}

/**
 * Progress of {@link Ensemble.fit}: a member's fit stages (with `member`), then the ensemble's own
 * `'calibrate'` stage over the held-out images (without `member`).
 * @example
 * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
 * await ensemble.fit(goodImages, { onProgress: (p: EnsembleProgress) => console.log(p.member ?? 'ensemble', p.stage, p.done, p.total ?? '?') });
 */
export interface EnsembleProgress extends Progress {
  /** The member being fitted; absent for the ensemble's own calibration stage. */
  member?: number;
}

/**
 * Options of {@link Ensemble.fit}.
 * @example
 * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
 * const controller = new AbortController();
 * setTimeout(() => controller.abort(), 120_000);
 * await ensemble.fit(goodImages, { signal: controller.signal, onProgress: (p) => console.log(p.member, p.stage, p.done) });
 */
export interface EnsembleFitOptions {
  /** Aborts the fit; the ensemble keeps its previous state. */
  signal?: AbortSignal;
  /** Called as each member's fit, then the ensemble's calibration, advances (synchronously; keep it cheap). */
  onProgress?: (p: EnsembleProgress) => void;
  /** Bounds each member's staged patches, as {@link FitOptions.maxStagedPatches} does for one engine (0, or at least 512). */
  maxStagedPatches?: number;
}

/**
 * What {@link Ensemble.fit} did.
 * @example
 * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
 * const { images, calibrationImages, members, seconds } = await ensemble.fit(goodImages);
 * console.log(`${images} bank images, ${calibrationImages} held out, rows ${members.map((m) => m.bankRows).join('/')} in ${seconds.toFixed(1)} s`);
 */
export interface EnsembleFitSummary {
  /** Images in every member's bank. */
  images: number;
  /** Nominal images that set the normalisers and the threshold. */
  calibrationImages: number;
  /** The fused threshold this fit set (null: calibration off, or too few images). */
  calibration: Calibration | null;
  /** What deserves attention (thin calibration evidence, ...). Empty when none. */
  warnings: string[];
  /** Each member's own fit summary, in member order (members hold nothing out themselves; they fit in lockstep, so each `seconds` is the whole fit's). */
  members: FitSummary[];
  /** Wall-clock duration of the whole fit, every member and the calibration. */
  seconds: number;
}

/**
 * A fused result: `score` and `map` are the averages of the members' normalised values;
 * `normalizedScore` and `isAnomaly` come from the threshold of the fused held-out scores.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const r: EnsembleScoreResult = await ensemble.score('frame.png');
 * console.log(r.score, r.isAnomaly, r.memberScores.join(', '));
 */
export interface EnsembleScoreResult extends ScoreResult {
  /** Each member's raw image score, in member order. */
  memberScores: number[];
}

/**
 * One item of {@link Ensemble.scoreStream}: a result, or (with `onError: 'yield'`) an error, with the input's position.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * for await (const item of ensemble.scoreStream(goodImages, { onError: 'yield' })) {
 *   if (item.error) console.error(item.index, item.error.code);
 *   else console.log(item.index, item.score, item.memberScores);
 * }
 */
export type EnsembleStreamItem = (EnsembleScoreResult & { index: number; error?: undefined }) | { index: number; error: ReconpatchError };

/**
 * Options of {@link Ensemble.load}: what every member is loaded with (as in Engine.load's `input` and `threads`).
 * @example
 * const ensemble = await Ensemble.load('part.rcpe', { threads: 2, input: { maxPixels: 4096 * 4096 } });
 */
export interface EnsembleLoadOptions {
  /** What inputs are accepted (pixel budget, damaged images). */
  input?: InputOptions;
  /** libtorch intra-op threads for each member on this machine (default: each member's saved `threads`). */
  threads?: number;
}

/**
 * What an ensemble holds: its members, their normalisers and the fused threshold.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const { members, ranges, calibration } = ensemble.info;
 * console.log(members.map((m) => m.backbone), ranges !== null, calibration?.threshold);
 */
export interface EnsembleInfo {
  /** Each member's {@link EngineInfo} with its resolved options, in member order. */
  members: (EngineInfo & { options: NativeOptions })[];
  /** Per-member normalisers from the held-out images, or null (not fitted, or fitted without calibration). */
  ranges: MemberRange[] | null;
  /** Threshold statistics of the fused held-out scores, or null. */
  calibration: Calibration | null;
}

/**
 * An ensemble of engines fused by per-member min-max normalisation (see the file comment).
 * @example
 * const ensemble = await Ensemble.create({ members: [{ backbone: 'mobilenet_v1.pt' }, { backbone: 'darknet_tiny.pt' }] });
 * await ensemble.fit(goodImages);
 * const { score, normalizedScore, isAnomaly, memberScores, map } = await ensemble.score('part.png');
 * await ensemble.save('part.rcpe');
 */
export class Ensemble {
  readonly #members: Engine[];
  readonly #calibrationOptions: CalibrationOptions;
  #fitted: boolean;
  #ranges: MemberRange[] | null;
  #calibration: Calibration | null;
  readonly #queue = new CallQueue();
  readonly #input: DecodePolicy;

  private constructor(members: Engine[], calibrationOptions: CalibrationOptions, input: InputOptions | undefined, state?: Pick<EnsembleMeta, 'ranges' | 'calibration'>) {
    this.#members = members;
    // Decoded once for every member: within the budget of each member's resize.
    this.#input = { ...resolveInput(input), resizes: members.map((m) => ({ resize: m.options.resize, resizeMode: m.options.resizeMode })) };
    this.#calibrationOptions = calibrationOptions;
    this.#fitted = state !== undefined;
    this.#ranges = state?.ranges ?? null;
    this.#calibration = upgradeCalibration(state?.calibration ?? null);
  }

  /**
   * Builds every member (loads and validates its backbone) as {@link Engine.create} does. Throws
   * ERR_INVALID_OPTION (a member's error message starts with `members[i]:`), ERR_BACKBONE,
   * ERR_DEVICE_UNAVAILABLE.
   * @example
   * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2, resize: 320, crop: 288 }] });
   */
  static async create(options: EnsembleOptions): Promise<Ensemble> {
    const stack = new Error();
    try {
      if (options === null || typeof options !== 'object' || Array.isArray(options)) throw invalidOption('ensemble options must be an object { members: [...] }');
      for (const key of Object.keys(options))
        if (key !== 'members' && key !== 'calibration' && key !== 'input') throw invalidOption(`unknown ensemble option '${key}' (known: members, calibration, input)`);
      resolveInput(options.input);
      const { members } = options;
      if (!Array.isArray(members) || members.length === 0 || members.length > MAX_MEMBERS)
        throw invalidOption(`members must be an array of 1 to ${MAX_MEMBERS} engine option objects`);
      const calibrationOptions = resolveCalibration(options.calibration);
      const engines: Engine[] = [];
      for (const [i, m] of members.entries()) {
        if (m === null || typeof m !== 'object' || Array.isArray(m)) throw invalidOption(`members[${i}] must be an engine options object`);
        if ('calibration' in m) throw invalidOption(`members[${i}].calibration: set calibration on the ensemble, not on a member (all members share one holdout)`);
        if ('input' in m) throw invalidOption(`members[${i}].input: set input on the ensemble, not on a member (an image is decoded once for all)`);
        if (headAuto(m.head)) throw invalidOption(`members[${i}].head: 'auto' checks one engine at a time; give ensemble members head true or false`);
        try {
          // Members keep every image they are given: the ensemble holds out the calibration images itself.
          engines.push(await Engine.create({ ...m, calibration: false, input: options.input }));
        } catch (err) {
          rethrow(err, stack, `members[${i}]`);
        }
      }
      return new Ensemble(engines, calibrationOptions, options.input);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * Loads an ensemble saved by {@link Ensemble.save}. Throws ERR_MODEL_FILE for unreadable,
   * damaged or foreign files.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * console.log(ensemble.size, ensemble.info.calibration?.threshold);
   */
  static async load(file: string, options: EnsembleLoadOptions = {}): Promise<Ensemble> {
    const stack = new Error();
    try {
      if (typeof file !== 'string' || file === '') throw invalidOption('load expects a file path');
      checkEnsembleLoadOptions(options);
      return await Ensemble.#fromBytes(await readModelFile(file), `'${file}'`, options);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * Loads an ensemble from the bytes {@link Ensemble.saveBytes} returned. Throws ERR_MODEL_FILE.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const copy = await Ensemble.loadBytes(await ensemble.saveBytes());
   */
  static async loadBytes(bytes: Uint8Array, options: EnsembleLoadOptions = {}): Promise<Ensemble> {
    const stack = new Error();
    try {
      if (!(bytes instanceof Uint8Array)) throw invalidOption('loadBytes expects a Buffer or Uint8Array');
      checkEnsembleLoadOptions(options);
      return await Ensemble.#fromBytes(Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength), 'these bytes', options);
    } catch (err) {
      rethrow(err, stack);
    }
  }

  static async #fromBytes(bytes: Buffer, label: string, { input, threads }: EnsembleLoadOptions): Promise<Ensemble> {
    const { meta, members } = parseContainer(bytes, label);
    const engines: Engine[] = [];
    for (const [i, memberBytes] of members.entries()) {
      try {
        engines.push(await Engine.loadBytes(memberBytes, { input, ...(threads === undefined ? {} : { threads }) }));
      } catch (err) {
        throw new ReconpatchError('ERR_MODEL_FILE', `ensemble model ${label}: member ${i} is not a valid model (${(err as Error).message})`, { cause: err });
      }
      if (engines[i].info.backbone !== meta.members[i].backbone)
        throw new ReconpatchError('ERR_MODEL_FILE', `ensemble model ${label}: member ${i} holds backbone '${engines[i].info.backbone}', its header says '${meta.members[i].backbone}'`);
    }
    return new Ensemble(engines, storedCalibrationOptions(meta.calibrationOptions), input, meta);
  }

  /**
   * True when `file` starts like an ensemble model file (for tools that accept both kinds); false
   * when it cannot be opened. Reads only the header: no validation. A path that is not a regular
   * file (a FIFO, a device, a directory) is refused with ERR_MODEL_FILE at once, as `load` does:
   * opened without blocking, never read.
   * @example
   * const model = (await Ensemble.isEnsembleFile('part.model')) ? await Ensemble.load('part.model') : await Engine.load('part.model');
   */
  static async isEnsembleFile(file: string): Promise<boolean> {
    let opened: Awaited<ReturnType<typeof openRegularFile>>;
    try {
      opened = await openRegularFile(file, (why, cause) => new ReconpatchError('ERR_MODEL_FILE', `cannot read model file '${file}': ${why}`, { cause }));
    } catch (err) {
      if ((err as Error).cause) return false; // open failed (no such file, ...): the loader says why
      throw err; // not a regular file
    }
    try {
      const head = Buffer.alloc(MAGIC.length);
      const { bytesRead } = await opened.handle.read(head, 0, MAGIC.length, 0);
      return bytesRead === MAGIC.length && head.equals(MAGIC);
    } finally {
      await opened.handle.close();
    }
  }

  /**
   * The number of members.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * console.log(`${ensemble.size} members`);
   */
  get size(): number {
    return this.#members.length;
  }

  /**
   * What this ensemble holds now (a fresh object on every read).
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * if (ensemble.info.ranges === null) console.warn('no normalisers: only scoreMembers works');
   */
  get info(): EnsembleInfo {
    return {
      members: this.#members.map((m) => ({ ...m.info, options: m.options })),
      ranges: this.#ranges?.map((r) => ({ ...r })) ?? null,
      calibration: this.#calibration && { ...this.#calibration },
    };
  }

  /**
   * Fits every member on the same images except the held-out calibration images, in one pass over
   * the input (any Iterable or AsyncIterable; each batch is decoded once and embedded by every
   * member), then sets each member's min / max from its raw scores and maps of the held-out
   * images. A failed or aborted fit leaves the ensemble as it was.
   * Fused scores need at least 2 held-out images; with fewer (or `calibration: false`) only
   * {@link Ensemble.scoreMembers} works. Throws ERR_INVALID_OPTION, ERR_INVALID_IMAGE,
   * ERR_EMPTY_TRAINING_SET, ERR_ABORTED, ERR_INPUT, ERR_CALLBACK.
   * @example
   * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
   * const summary = await ensemble.fit(['good/000.png', 'good/001.png', 'good/002.png', 'good/003.png'], { signal });
   */
  fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: EnsembleFitOptions = {}): Promise<EnsembleFitSummary> {
    const stack = new Error();
    return this.#queue.run(() => this.#fit(images, options, 'fit')).catch((err) => rethrow(err, stack));
  }

  /**
   * Takes new images of good parts into every member, as {@link Engine.update} does for one
   * engine, in one pass over the input. The normalisers stay those of the fit; new held-out images
   * add their fused scores to the threshold's evidence. Abort or failure leaves every member as it
   * was. `addedRows` and `bankRows` are summed over the members.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const { addedRows } = await ensemble.update(['shift2/000.png', 'shift2/001.png', 'shift2/002.png']);
   */
  update(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: UpdateOptions = {}): Promise<UpdateSummary> {
    const stack = new Error();
    return this.#queue.run(async () => {
      if (!this.#fitted) throw notFitted();
      const before = this.#members.reduce((s, m) => s + m.info.bankRows, 0);
      const { images: count, calibrationImages, calibration, warnings, seconds } = await this.#fit(images, options, 'update');
      const bankRows = this.#members.reduce((s, m) => s + m.info.bankRows, 0);
      return { images: count, calibrationImages, calibration, warnings, addedRows: bankRows - before, bankRows, seconds };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores one image: fused score and map, threshold decision, each member's raw score. The call
   * takes its place among the ensemble's calls when it is made. Throws ERR_NOT_FITTED (also when
   * fitted without normalisers), ERR_INVALID_IMAGE, ERR_INVALID_OPTION.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const { score, normalizedScore, isAnomaly, memberScores, heatmap } = await ensemble.score('frame.png', { heatmap: 'png' });
   */
  score(image: ImageInput, options: ScoreOptions = {}): Promise<EnsembleScoreResult> {
    const stack = new Error();
    const frame = toRawFrame(image, undefined, this.#input);
    frame.catch(() => undefined); // reported by the queued call below
    return this.#queue.run(async () => {
      checkScoreOptions(options);
      this.#requireRanges();
      const f = await frame;
      return this.#fuse((await this.#scoreFrames([f]))[0], f, options);
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Sets the fused thresholds from images scored now, as {@link Engine.calibrate} does (labels: F1
   * or a target recall; none: the nominal rule); kept with the ensemble. The normalisers stay.
   * Throws ERR_NOT_FITTED, ERR_INVALID_OPTION, ERR_INVALID_IMAGE.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * await ensemble.calibrate(['val/good.png', 'val/crack.png'], { labels: [0, 1] });
   */
  calibrate(images: ImageInput[], options: CalibrateOptions = {}): Promise<Calibration> {
    const stack = new Error();
    return this.#queue.run(async () => {
      const ranges = this.#requireRanges();
      const fused: { score: number; map: Float32Array }[] = [];
      for await (const { outputs } of this.#batches(images)) for (const o of outputs) fused.push(fuseWithRanges(o, ranges));
      if (fused.length === 0) throw invalidOption('calibrate expects a non-empty array of images');
      this.#calibration = calibrationFromResults(fused, options, this.#calibration, this.#calibrationOptions.falseAlarmRate);
      return { ...this.#calibration };
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Sets the fused image threshold (and optionally the pixel threshold) by hand, in fused units
   * (nominal parts about 0..1). Throws ERR_NOT_FITTED, ERR_INVALID_OPTION.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * await ensemble.setThreshold(1.2);
   */
  setThreshold(threshold: number, options: { pixelThreshold?: number } = {}): Promise<void> {
    const stack = new Error();
    return this.#queue.run(async () => {
      checkThreshold(threshold, options);
      this.#requireRanges();
      this.#calibration = manualCalibration(this.#calibration, threshold, options.pixelThreshold);
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores several images (each member in native batches); results in input order. Throws
   * ERR_NOT_FITTED, ERR_INVALID_IMAGE, ERR_INVALID_OPTION (not an array).
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const results = await ensemble.scoreMany(['a.png', 'b.png']);
   * const flagged = results.filter((r) => r.isAnomaly).length;
   */
  scoreMany(images: ImageInput[], options: ScoreOptions = {}): Promise<EnsembleScoreResult[]> {
    const stack = new Error();
    return this.#queue.run(async () => {
      checkScoreOptions(options);
      this.#requireRanges();
      const out: EnsembleScoreResult[] = [];
      for await (const { frames, outputs } of this.#batches(images)) {
        for (const [j, o] of outputs.entries()) out.push(await this.#fuse(o, frames[j], options));
      }
      return out;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores any Iterable or AsyncIterable of images like {@link Engine.scoreStream}: results in
   * input order, at most `concurrency` images in flight (decoding overlaps the members' work),
   * per-item errors thrown (`'throw'`, default) or yielded as `{ index, error }` (`'yield'`).
   * Throws ERR_INVALID_OPTION for bad options or input, ERR_ABORTED when `signal` aborts.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * for await (const r of ensemble.scoreStream(goodImages, { concurrency: 2, signal, onError: 'yield' })) {
   *   if (r.error) console.error(r.index, r.error.code);
   *   else if (r.isAnomaly) console.log('defect in image', r.index, r.memberScores);
   * }
   */
  async *scoreStream(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: ScoreStreamOptions = {}): AsyncGenerator<EnsembleStreamItem> {
    const { concurrency = 2, signal, onError = 'throw', heatmap } = options;
    const outcomes = orderedMap(images, (image) => this.score(image, { heatmap }), { concurrency, signal, onError, name: 'scoreStream', items: 'images' });
    for await (const o of outcomes) yield 'error' in o ? { index: o.index, error: o.error } : { ...o.result, index: o.index };
  }

  /**
   * Every member's raw score and map per image, without fusion. Works without calibration (an
   * ensemble fitted with `calibration: false`): the input of {@link fuseTestMinMax}.
   * Throws ERR_NOT_FITTED, ERR_INVALID_IMAGE, ERR_INVALID_OPTION (not an array).
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const outputs = await ensemble.scoreMembers(['test/0.png', 'test/1.png']);
   * const members = outputs[0].scores.map((_, m) => ({ scores: outputs.map((o) => o.scores[m]), maps: outputs.map((o) => o.maps[m]) }));
   * const { scores } = fuseTestMinMax(members);
   */
  scoreMembers(images: ImageInput[]): Promise<MemberOutputs[]> {
    const stack = new Error();
    return this.#queue.run(async () => {
      if (!this.#fitted) throw notFitted();
      const out: MemberOutputs[] = [];
      for await (const { outputs } of this.#batches(images)) out.push(...outputs);
      return out;
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * Saves the ensemble to one file (temporary file, fsync, rename: an existing file is never
   * half-overwritten). Throws ERR_INVALID_OPTION, ERR_NOT_FITTED, ERR_IO.
   * @example
   * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
   * await ensemble.fit(goodImages);
   * await ensemble.save('part.rcpe');
   */
  save(file: string): Promise<void> {
    const stack = new Error();
    return this.#queue.run(async () => {
      if (typeof file !== 'string' || file === '') throw invalidOption('save expects a file path');
      await writeFileAtomically(file, await this.#encode(), 'ensemble model');
    }).catch((err) => rethrow(err, stack));
  }

  /**
   * The ensemble as the bytes of its model file, for storage elsewhere ({@link Ensemble.loadBytes}
   * reads them). Throws ERR_NOT_FITTED.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const bytes: Buffer = await ensemble.saveBytes();
   */
  saveBytes(): Promise<Buffer> {
    const stack = new Error();
    return this.#queue.run(() => this.#encode()).catch((err) => rethrow(err, stack));
  }

  /**
   * Fuses one image's raw member outputs with this ensemble's held-out normalisers: the average of
   * the members' min-max normalised scores, and per pixel of their maps. Throws ERR_NOT_FITTED
   * (no normalisers), ERR_INVALID_OPTION (wrong number of members, maps of different sizes).
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const [raw] = await ensemble.scoreMembers(['frame.png']);
   * const { score, map } = ensemble.fuse(raw);
   */
  fuse(o: MemberOutputs): { score: number; map: Float32Array } {
    return fuseWithRanges(o, this.#requireRanges());
  }

  async #encode(): Promise<Buffer> {
    if (!this.#fitted) throw notFitted();
    const members: Buffer[] = [];
    for (const m of this.#members) members.push(await m.saveBytes());
    const meta: EnsembleMeta = {
      format: 'reconpatch-ensemble',
      members: this.#members.map((m) => ({ backbone: m.info.backbone })),
      calibrationOptions: this.#calibrationOptions,
      ranges: this.#ranges,
      calibration: this.#calibration,
    };
    return buildContainer(meta, members);
  }

  // Decodes once, then every member scores the same frames, one batch at a time.
  async *#batches(images: ImageInput[]): AsyncGenerator<{ frames: RawFrame[]; outputs: MemberOutputs[] }> {
    if (!Array.isArray(images)) throw invalidOption('expects an array of images');
    const batchSize = this.#members[0].options.batchSize;
    for (let i = 0; i < images.length; i += batchSize) {
      const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => toRawFrame(img, i + j, this.#input)));
      yield { frames, outputs: await this.#scoreFrames(frames) };
    }
  }

  async #scoreFrames(frames: RawFrame[]): Promise<MemberOutputs[]> {
    const perMember: ScoreResult[][] = [];
    // Members run one after another: each already uses every core.
    for (const m of this.#members) perMember.push(await m.scoreMany(frames));
    return frames.map((_, j) => ({
      scores: perMember.map((r) => r[j].score),
      maps: perMember.map((r) => r[j].map),
      width: perMember[0][j].width,
      height: perMember[0][j].height,
    }));
  }

  #requireRanges(): MemberRange[] {
    if (!this.#fitted) throw notFitted();
    if (!this.#ranges)
      throw new ReconpatchError('ERR_NOT_FITTED', 'this ensemble has no normalisers: it was fitted with calibration off or on fewer than 2 images; refit with calibration on and at least 2 images (more is better), or use scoreMembers + fuseTestMinMax');
    return this.#ranges;
  }

  async #fuse(o: MemberOutputs, frame: RawFrame, options: ScoreOptions): Promise<EnsembleScoreResult> {
    const fused = fuseWithRanges(o, this.#requireRanges());
    const result = await finishResult({ ...fused, width: o.width, height: o.height }, frame, this.#calibration, options);
    return { ...result, memberScores: [...o.scores] };
  }

  // The members' fit (or update) transactions in lockstep: stage all, calibrate on the pending
  // models, commit all.
  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress, maxStagedPatches = 0 }: EnsembleFitOptions, mode: 'fit' | 'update'): Promise<EnsembleFitSummary> {
    checkMaxStagedPatches(maxStagedPatches);
    const started = performance.now();
    const natives = this.#members.map(nativeOf);
    const control = new FitControl(natives, signal, 'ensemble', mode);
    try {
      const staged = await stageFit(natives, images, control, {
        mode, maxStagedPatches, onProgress: onProgress && ((p: Progress, member) => onProgress(member === undefined ? p : { ...p, member })),
        calibration: this.#calibrationOptions, batchSize: natives[0].options().batchSize, input: this.#input,
      });
      const evidence = await nominalEvidence(natives, staged, control, natives[0].options().batchSize, onProgress && ((p) => onProgress(p)));
      const options = this.#calibrationOptions;
      let ranges: MemberRange[] | null = null;
      let calibration: Calibration | null = null;
      if (mode === 'update') {
        // An update keeps the fit's normalisers; its evidence, fused with them, pools with the stored one.
        ranges = this.#ranges;
        calibration = this.#calibration;
        if (options.enabled && ranges) calibration = poolNominal(calibration, fuseEvidence(evidence, ranges), options.falseAlarmRate);
      } else if (options.enabled && evidence[0].length >= 2) {
        ranges = evidence.map(memberRange);
        calibration = calibrateNominal(fuseEvidence(evidence, ranges), options.falseAlarmRate, staged.calibrationFrames.length ? 'holdout' : 'leave-one-out');
      }
      const memberMeta = JSON.stringify({ calibration: null, calibrationOptions: resolveCalibration(false) });
      for (const n of natives) n.fitCommit(memberMeta);
      this.#ranges = ranges;
      this.#calibration = calibration;
      this.#fitted = true;
      const seconds = (performance.now() - started) / 1000;
      const summaries: FitSummary[] = natives.map((n) => {
        const i = n.info();
        return { images: i.trainImages, patches: i.trainPatches, bankRows: i.bankRows, calibrationImages: 0, calibration: null, warnings: [], seconds };
      });
      const warnings = calibration ? [...calibration.warnings] : this.#calibrationOptions.enabled ? [missingCalibrationWarning(evidence[0].length)] : [];
      warnings.push(...stagedBudgetWarning(maxStagedPatches, summaries[0].patches, summaries[0].images));
      return { images: staged.images, calibrationImages: calibration ? evidence[0].length : 0, calibration, warnings, members: summaries, seconds };
    } catch (err) {
      abortFit(natives);
      throw control.explain(err);
    } finally {
      control.dispose();
    }
  }
}

function invalidOption(message: string): ReconpatchError {
  return new ReconpatchError('ERR_INVALID_OPTION', message);
}

function notFitted(): ReconpatchError {
  return new ReconpatchError('ERR_NOT_FITTED', 'the ensemble is not fitted; call fit() with images of good parts first');
}

function checkEnsembleLoadOptions(options: EnsembleLoadOptions): void {
  if (options === null || typeof options !== 'object') throw invalidOption('load options must be an object');
  for (const key of Object.keys(options)) if (key !== 'input' && key !== 'threads') throw invalidOption(`unknown ensemble load option '${key}' (known: input, threads)`);
  const { threads } = options;
  if (threads !== undefined && !(Number.isInteger(threads) && threads >= 1 && threads <= 1024))
    throw invalidOption(`threads must be an integer in [1, 1024], got ${JSON.stringify(threads)}`);
  resolveInput(options.input);
}
