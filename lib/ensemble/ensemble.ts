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
 * A little over ~400 lines: create/load/fit/update, the lockstep calibration and fusion of the
 * members' results, info and dispose each stay short; scoring is shared with Engine (../engine/scorer.ts).
 *
 * What it shares with Engine (scoring, thresholds, save, the call queue, the fit transaction) is
 * written once in ../engine/scorer.ts and ../engine/transaction.ts; the fusion maths and the
 * container live in their own files.
 */
import { createHash } from 'node:crypto';

import { type Calibration, calibrateNominal, poolNominal, upgradeCalibration } from '../calibration.js';
import { missingCalibrationWarning } from '../engine/decisions.js';
import { Engine, type FitSummary, type UpdateOptions, type UpdateSummary, nativeOf, setMemberHash } from '../engine/engine.js';
import { writeMetadata } from '../engine/metadata.js';
import { readModelFile } from '../engine/model_file.js';
import { checkModelId, mergeSizes, modelInfo, newModelRecord } from '../engine/model_info.js';
import { type ScoreOptions, type ScoreResult, finishResult } from '../engine/results.js';
import { Scorer } from '../engine/scorer.js';
import { type Progress, checkMaxStagedPatches, stagedBudgetWarning } from '../engine/staged_fit.js';
import { fitTransaction } from '../engine/transaction.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { type DecodePolicy, type ImageInput, type InputOptions, resolveInput, toRawFrame } from '../io/images.js';
import { openRegularFile } from '../io/regular_file.js';
import type { RawFrame } from '../native.js';
import { type CalibrationOptions, headAuto, resolveCalibration, storedCalibrationOptions } from '../options.js';
import { MAGIC, MAX_MEMBERS, type EnsembleMeta, buildContainer, parseContainer } from './container.js';
import { type MemberOutputs, type MemberRange, fuseEvidence, fuseWithRanges, memberRange } from './fusion.js';
import type { EnsembleFitOptions, EnsembleFitSummary, EnsembleInfo, EnsembleLoadOptions, EnsembleOptions, EnsembleScoreResult } from './types.js';

export { fuseTestMinMax, minMax } from './fusion.js';
export type { MemberOutputs, MemberRange } from './fusion.js';
export type { EnsembleFitOptions, EnsembleFitSummary, EnsembleInfo, EnsembleLoadOptions, EnsembleOptions, EnsembleProgress, EnsembleScoreResult, EnsembleStreamItem } from './types.js';

/**
 * An ensemble of engines fused by per-member min-max normalisation (see the file comment).
 * @example
 * const ensemble = await Ensemble.create({ members: [{ backbone: 'mobilenet_v1.pt' }, { backbone: 'darknet_tiny.pt' }] });
 * await ensemble.fit(goodImages);
 * const { score, normalizedScore, isAnomaly, memberScores, map } = await ensemble.score('part.png');
 * await ensemble.save('part.rcpe');
 */
export class Ensemble extends Scorer<EnsembleScoreResult, MemberOutputs> {
  readonly #members: Engine[];
  #fitted: boolean;
  #ranges: MemberRange[] | null;
  readonly #input: DecodePolicy;
  protected readonly what = 'ensemble';

  private constructor(members: Engine[], calibrationOptions: CalibrationOptions, input: InputOptions | undefined, state?: Pick<EnsembleMeta, 'ranges' | 'calibration' | 'model'>) {
    super(calibrationOptions);
    this.#members = members;
    // Decoded once for every member: within the budget of each member's resize.
    this.#input = { ...resolveInput(input), resizes: members.map((m) => ({ resize: m.options.resize, resizeMode: m.options.resizeMode, upscale: m.options.upscale })) };
    this.#fitted = state !== undefined;
    this.#ranges = state?.ranges ?? null;
    this.calibration = upgradeCalibration(state?.calibration ?? null);
    this.model = state?.model ?? null;
    // Loaded members know their hashes: an older file's ensemble hash is derived from them.
    if (state) this.hash = state.model?.hash ?? ensembleHash(members.map((m) => m.info.model!.hash), this.#ranges);
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
    this.checkAlive();
    return this.#members.length;
  }

  /**
   * What this ensemble holds now (a fresh object on every read).
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * if (ensemble.info.ranges === null) console.warn('no normalisers: only scoreMembers works');
   */
  get info(): EnsembleInfo {
    this.checkAlive();
    return {
      members: this.#members.map((m) => ({ ...m.info, options: m.options })),
      ranges: this.#ranges?.map((r) => ({ ...r })) ?? null,
      model: this.hash ? modelInfo(this.model, this.hash, this.#members.map((m) => m.info.backbone).join('+'), this.#members[0].info.trainImages, this.calibration) : null,
      calibration: this.calibration && { ...this.calibration },
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
    return this.exclusive(() => this.#fit(images, options, 'fit')).catch((err) => rethrow(err, stack));
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
    return this.exclusive(async () => {
      if (!this.#fitted) throw notFitted();
      const before = this.#members.reduce((s, m) => s + m.info.bankRows, 0);
      const { images: count, calibrationImages, calibration, warnings, seconds } = await this.#fit(images, options, 'update');
      const bankRows = this.#members.reduce((s, m) => s + m.info.bankRows, 0);
      return { images: count, calibrationImages, calibration, warnings, addedRows: bankRows - before, bankRows, seconds };
    }).catch((err) => rethrow(err, stack));
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
    return this.exclusive(async () => {
      if (!Array.isArray(images)) throw invalidOption('scoreMembers expects an array of images');
      if (!this.#fitted) throw notFitted();
      const out: MemberOutputs[] = [];
      for await (const { raws } of this.batches(images)) out.push(...raws);
      return out;
    }).catch((err) => rethrow(err, stack));
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
    this.checkAlive();
    return fuseWithRanges(o, this.#requireRanges());
  }

  protected async encode(): Promise<Buffer> {
    if (!this.#fitted) throw notFitted();
    const members: Buffer[] = [];
    for (const m of this.#members) members.push(await m.saveBytes());
    const meta: EnsembleMeta = {
      format: 'reconpatch-ensemble',
      members: this.#members.map((m) => ({ backbone: m.info.backbone })),
      calibrationOptions: this.calibrationOptions,
      ranges: this.#ranges,
      calibration: this.calibration,
      ...(this.model ? { model: this.model } : {}),
    };
    return buildContainer(meta, members);
  }

  protected async release(): Promise<void> {
    await Promise.all(this.#members.map((m) => m.dispose()));
  }

  protected batchSize(): number {
    return this.#members[0].options.batchSize;
  }

  // Decoded once for every member.
  protected decode(image: ImageInput, index?: number): Promise<RawFrame> {
    return toRawFrame(image, index, this.#input);
  }

  // Every member scores the same frames.
  protected async scoreFrames(frames: RawFrame[]): Promise<MemberOutputs[]> {
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

  protected decisionValues(o: MemberOutputs): { score: number; map: Float32Array } {
    return fuseWithRanges(o, this.#requireRanges());
  }

  protected requireFitted(): void {
    this.#requireRanges();
  }

  #requireRanges(): MemberRange[] {
    if (!this.#fitted) throw notFitted();
    if (!this.#ranges)
      throw new ReconpatchError('ERR_NOT_FITTED', 'this ensemble has no normalisers: it was fitted with calibration off or on fewer than 2 images; refit with calibration on and at least 2 images (more is better), or use scoreMembers + fuseTestMinMax');
    return this.#ranges;
  }

  protected async finish(o: MemberOutputs, frame: RawFrame, options: ScoreOptions): Promise<EnsembleScoreResult> {
    const fused = fuseWithRanges(o, this.#requireRanges());
    const result = await finishResult({ ...fused, width: o.width, height: o.height }, frame, this.calibration, this.modelRef(), options);
    return { ...result, memberScores: [...o.scores] };
  }

  // The members' fit (or update) transactions in lockstep (../engine/transaction.ts): stage all,
  // calibrate on the pending models, commit all.
  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress, maxStagedPatches = 0, modelId }: EnsembleFitOptions, mode: 'fit' | 'update'): Promise<EnsembleFitSummary> {
    checkMaxStagedPatches(maxStagedPatches);
    checkModelId(modelId);
    const started = performance.now();
    const natives = this.#members.map(nativeOf);
    const options = this.calibrationOptions;
    const r = await fitTransaction(natives, images, {
      what: 'ensemble', mode, maxStagedPatches, signal, calibration: options, input: this.#input,
      onProgress: onProgress && ((p: Progress, member) => onProgress(member === undefined ? p : { ...p, member })),
    }, async (staged, evidence) => {
      let ranges: MemberRange[] | null = null;
      let calibration: Calibration | null = null;
      if (mode === 'update') {
        // An update keeps the fit's normalisers; its evidence, fused with them, pools with the stored one.
        ranges = this.#ranges;
        calibration = this.calibration;
        if (options.enabled && ranges) calibration = poolNominal(calibration, fuseEvidence(evidence, ranges), options.falseAlarmRate);
      } else if (options.enabled && evidence[0].length >= 2) {
        ranges = evidence.map(memberRange);
        calibration = calibrateNominal(fuseEvidence(evidence, ranges), options.falseAlarmRate, staged.calibrationFrames.length ? 'holdout' : 'leave-one-out');
      }
      // Members keep no calibration of their own: the ensemble's is in its container.
      const metadata = writeMetadata({ calibration: null, calibrationOptions: resolveCalibration(false) });
      return { commit: natives.map((engine) => ({ engine, metadata })), result: { staged, evidence: evidence[0].length, ranges, calibration } };
    });
    this.#ranges = r.ranges;
    this.calibration = r.calibration;
    this.#fitted = true;
    // The ensemble's identity (../engine/model_info.ts): its members' content hashes and normalisers.
    const memberHashes = await Promise.all(natives.map((n) => n.contentHash()));
    // Members keep no record of their own (as in a loaded file): only their hashes change.
    for (const [i, m] of this.#members.entries()) setMemberHash(m, memberHashes[i]);
    const hash = ensembleHash(memberHashes, r.ranges);
    const sizes = mode === 'fit' ? r.staged.sizes : this.model ? mergeSizes(this.model.imageSizes, r.staged.sizes) : null;
    this.model = newModelRecord(hash, this.model, modelId, sizes);
    this.hash = hash;
    const seconds = (performance.now() - started) / 1000;
    const summaries: FitSummary[] = natives.map((n) => {
      const i = n.info();
      return { images: i.trainImages, patches: i.trainPatches, bankRows: i.bankRows, calibrationImages: 0, calibration: null, warnings: [], seconds };
    });
    const warnings = r.calibration ? [...r.calibration.warnings] : options.enabled ? [missingCalibrationWarning(r.evidence)] : [];
    warnings.push(...stagedBudgetWarning(maxStagedPatches, summaries[0].patches, summaries[0].images));
    return { images: r.staged.images, calibrationImages: r.calibration ? r.evidence : 0, calibration: r.calibration, warnings, members: summaries, seconds };
  }
}

/** An ensemble's content hash: over its members' (in order) and the normalisers that fuse them. */
function ensembleHash(members: string[], ranges: MemberRange[] | null): string {
  return createHash('sha256').update(`${members.join('\n')}\n${JSON.stringify(ranges)}`).digest('hex');
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
