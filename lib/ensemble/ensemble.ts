/**
 * Ensembles: several engines (one backbone, head and memory bank each) fitted on the same images,
 * whose raw scores and maps are fused by per-member min-max normalisation and averaging:
 *
 *   fused(x) = mean over members m of (raw_m(x) - min_m) / (max_m - min_m)
 *
 * Two sources for min_m / max_m:
 * - deployment ({@link Ensemble}): the held-out nominal images of the fit (the calibration
 *   holdout, shared by all members, so no member trained on them). Scores use the min / max of the
 *   held-out image scores; maps the min / max of every pixel of the held-out maps. Anomalies land
 *   above 1, nominal parts in [0, 1]; a threshold (mean + 3 std of the fused held-out scores, as
 *   in calibration.ts) then gives `normalizedScore` and `isAnomaly`.
 * - paper-comparable evaluation ({@link fuseTestMinMax}): the min / max over the test set itself,
 *   as ensemble results in the PatchCore paper are reported. Uses test images, so never for
 *   deployment.
 *
 * A member whose range is empty (max == min) contributes 0: it cannot tell images apart.
 *
 * The API is a separate `Ensemble` class (`Ensemble.create({ members: [...] })`) rather than
 * `Engine.create({ backbone: [a, b] })`: members may differ in more than the backbone (head,
 * resize, seed), and results carry per-member scores, so one engine's option list would not fit.
 *
 * Model file: one container ("RCPENSEM", format version, a `META` JSON section with the
 * normalisers and calibration, one `MEMB` section per member holding that member's complete
 * native model file), then a SHA-256 of everything before it. Written to a temporary file,
 * fsynced and renamed; any damage or inconsistency on load -> ERR_MODEL_FILE.
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { open, readFile, rename, unlink, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

import { type Calibration, calibrate, holdoutPicker, normalize } from '../calibration.js';
import { Engine, type EngineInfo, type FitSummary, type Progress, type ScoreOptions, type ScoreResult, type ScoreStreamOptions } from '../engine/engine.js';
import { ReconpatchError, rethrow } from '../errors.js';
import { heatmapPng } from '../heatmap.js';
import { type ImageInput, toRawFrame } from '../io/images.js';
import type { NativeOptions, RawFrame } from '../native.js';
import { type CalibrationOptions, type EngineOptions, resolveCalibration } from '../options.js';
import { orderedMap } from '../engine/ordered.js';

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
   * The held-out nominal images (default: 10% of the fit images, at least 3) that set each member's
   * min / max and the threshold. At least 2 must be held out for fused scores. `false`: every
   * image goes into the banks and only {@link Ensemble.scoreMembers} works (test-set evaluation).
   */
  calibration?: EngineOptions['calibration'];
}

/**
 * One member's normaliser: raw value -> (value - min) / (max - min), from the held-out images.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const ranges: MemberRange[] | null = ensemble.info.ranges;
 * const [raw] = await ensemble.scoreMembers(['frame.png']);
 * const firstMember = ranges && minMax(raw.scores[0], ranges[0].scoreMin, ranges[0].scoreMax);
 */
export interface MemberRange {
  /** Lowest raw image score of the member over the held-out images. */
  scoreMin: number;
  /** Highest raw image score of the member over the held-out images. */
  scoreMax: number;
  /** Lowest raw map value of the member over every pixel of the held-out maps. */
  mapMin: number;
  /** Highest raw map value of the member over every pixel of the held-out maps. */
  mapMax: number;
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
  /** Held-out nominal images that set the normalisers and the threshold. */
  calibrationImages: number;
  /** Each member's own fit summary, in member order (members hold nothing out themselves). */
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
 * One image's raw member outputs (no fusion), from {@link Ensemble.scoreMembers}.
 * @example
 * const ensemble = await Ensemble.load('part.rcpe');
 * const [first]: MemberOutputs[] = await ensemble.scoreMembers(['frame.png']);
 * console.log(first.scores, first.width, first.height);
 */
export interface MemberOutputs {
  /** Each member's raw image score, in member order. */
  scores: number[];
  /** Each member's raw anomaly map, in member order, row-major `height` x `width`. */
  maps: Float32Array[];
  /** The input image's width in pixels. */
  width: number;
  /** The input image's height in pixels. */
  height: number;
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

const MAGIC = Buffer.from('RCPENSEM');
const FORMAT_VERSION = 1;
const MAX_MEMBERS = 16;
// Every section's length is an u64, but a model above this is certainly damage.
const MAX_SECTION = 2 ** 40;

/**
 * Min-max normalisation: (value - lo) / (hi - lo); 0 for an empty range (hi <= lo). Not clamped:
 * values outside [lo, hi] land outside [0, 1].
 * @example
 * minMax(3, 1, 5); // 0.5
 * minMax(7, 1, 5); // 1.5
 * minMax(2, 4, 4); // 0
 */
export function minMax(value: number, lo: number, hi: number): number {
  return hi > lo ? (value - lo) / (hi - lo) : 0;
}

/**
 * Test-set min-max fusion (paper-comparable evaluation only: it looks at the test set). `members[m]`
 * holds member m's raw scores (and maps) for the same test images in the same order. Each member is
 * mapped to [0, 1] by the min / max of its own test scores (and of every pixel of its test maps,
 * or `mapRanges[m]` when the maps given are subsampled from larger ones), then the members are
 * averaged per image and per pixel. Throws ERR_INVALID_OPTION for no members, or members whose
 * score counts (or, when every member has maps, map counts and sizes) differ. Without maps on
 * every member, `maps` is empty.
 * @example
 * fuseTestMinMax([{ scores: [1, 3] }, { scores: [10, 30] }]).scores // [0, 1]
 */
export function fuseTestMinMax(
  members: { scores: number[]; maps?: Float32Array[] }[],
  mapRanges?: { min: number; max: number }[],
): { scores: number[]; maps: Float32Array[] } {
  if (members.length === 0) throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax needs at least one member');
  const n = members[0].scores.length;
  if (members.some((m) => m.scores.length !== n)) throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax: every member needs a score per test image');
  const withMaps = members.every((m) => m.maps !== undefined);
  if (withMaps && members.some((m) => m.maps?.length !== n || m.maps.some((map, i) => map.length !== (members[0].maps as Float32Array[])[i].length)))
    throw new ReconpatchError('ERR_INVALID_OPTION', 'fuseTestMinMax: every member needs a map of the same size per test image');
  const scores = new Array<number>(n).fill(0);
  const maps = withMaps ? (members[0].maps as Float32Array[]).map((m) => new Float32Array(m.length)) : [];
  for (const [j, m] of members.entries()) {
    const lo = Math.min(...m.scores);
    const hi = Math.max(...m.scores);
    for (let i = 0; i < n; i++) scores[i] += minMax(m.scores[i], lo, hi) / members.length;
    if (!withMaps) continue;
    let mapLo = Infinity;
    let mapHi = -Infinity;
    if (mapRanges) ({ min: mapLo, max: mapHi } = mapRanges[j]);
    else for (const map of m.maps as Float32Array[]) for (const v of map) { mapLo = Math.min(mapLo, v); mapHi = Math.max(mapHi, v); }
    for (const [i, map] of (m.maps as Float32Array[]).entries()) {
      const out = maps[i];
      for (let p = 0; p < map.length; p++) out[p] += minMax(map[p], mapLo, mapHi) / members.length;
    }
  }
  return { scores, maps };
}

interface EnsembleMeta {
  format: 'reconpatch-ensemble';
  members: { backbone: string }[];
  calibrationOptions: CalibrationOptions;
  ranges: MemberRange[] | null;
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
  #members: Engine[];
  // How to get an unfitted copy of member i for a refit (the current members stay until it succeeds).
  readonly #fresh: (i: number) => Promise<Engine>;
  readonly #calibrationOptions: CalibrationOptions;
  #fitted: boolean;
  #ranges: MemberRange[] | null;
  #calibration: Calibration | null;
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(members: Engine[], fresh: (i: number) => Promise<Engine>, calibrationOptions: CalibrationOptions, state?: Pick<EnsembleMeta, 'ranges' | 'calibration'>) {
    this.#members = members;
    this.#fresh = fresh;
    this.#calibrationOptions = calibrationOptions;
    this.#fitted = state !== undefined;
    this.#ranges = state?.ranges ?? null;
    this.#calibration = state?.calibration ?? null;
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
      for (const key of Object.keys(options)) if (key !== 'members' && key !== 'calibration') throw invalidOption(`unknown ensemble option '${key}' (known: members, calibration)`);
      const { members } = options;
      if (!Array.isArray(members) || members.length === 0 || members.length > MAX_MEMBERS)
        throw invalidOption(`members must be an array of 1 to ${MAX_MEMBERS} engine option objects`);
      const calibrationOptions = resolveCalibration(options.calibration);
      const memberOptions = members.map((m, i): EngineOptions => {
        if (m === null || typeof m !== 'object' || Array.isArray(m)) throw invalidOption(`members[${i}] must be an engine options object`);
        if ('calibration' in m) throw invalidOption(`members[${i}].calibration: set calibration on the ensemble, not on a member (all members share one holdout)`);
        // Members keep every image: the ensemble holds out the calibration images itself.
        return { ...m, calibration: false };
      });
      const engines: Engine[] = [];
      for (const [i, o] of memberOptions.entries()) {
        try {
          engines.push(await Engine.create(o));
        } catch (err) {
          rethrow(err, stack, `members[${i}]`);
        }
      }
      return new Ensemble(engines, (i) => Engine.create(memberOptions[i]), calibrationOptions);
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
  static async load(file: string): Promise<Ensemble> {
    const stack = new Error();
    try {
      if (typeof file !== 'string' || file === '') throw invalidOption('load expects a file path');
      let bytes: Buffer;
      try {
        bytes = await readFile(file);
      } catch (err) {
        throw new ReconpatchError('ERR_MODEL_FILE', `cannot read ensemble model '${file}' (${(err as NodeJS.ErrnoException).code ?? String(err)})`, { cause: err });
      }
      const { meta, members } = parseContainer(bytes, file);
      const engines = await withTempDir(async (dir) => {
        const out: Engine[] = [];
        for (const [i, memberBytes] of members.entries()) {
          const memberFile = path.join(dir, `member-${i}.rcp`);
          await writeFile(memberFile, memberBytes);
          try {
            out.push(await Engine.load(memberFile));
          } catch (err) {
            throw new ReconpatchError('ERR_MODEL_FILE', `ensemble model '${file}': member ${i} is not a valid model (${(err as Error).message})`, { cause: err });
          }
          if (out[i].info.backbone !== meta.members[i].backbone)
            throw new ReconpatchError('ERR_MODEL_FILE', `ensemble model '${file}': member ${i} holds backbone '${out[i].info.backbone}', its header says '${meta.members[i].backbone}'`);
        }
        return out;
      });
      const ensemble: Ensemble = new Ensemble(engines, (i) => cloneUnfitted(ensemble.#members[i]), meta.calibrationOptions, meta);
      return ensemble;
    } catch (err) {
      rethrow(err, stack);
    }
  }

  /**
   * True when `file` starts like an ensemble model file (for tools that accept both kinds); false
   * when it cannot be opened. Reads only the header: no validation.
   * @example
   * const model = (await Ensemble.isEnsembleFile('part.model')) ? await Ensemble.load('part.model') : await Engine.load('part.model');
   */
  static async isEnsembleFile(file: string): Promise<boolean> {
    const handle = await open(file, 'r').catch(() => null);
    if (!handle) return false;
    try {
      const head = Buffer.alloc(MAGIC.length);
      const { bytesRead } = await handle.read(head, 0, MAGIC.length, 0);
      return bytesRead === MAGIC.length && head.equals(MAGIC);
    } finally {
      await handle.close();
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
   * Fits every member, in turn, on the same images except the held-out calibration images, then
   * sets each member's min / max from its raw scores and maps of those held-out images. The input
   * list is collected first (the references, not decoded pixels) because every member reads it.
   * A failed or aborted fit leaves the ensemble as it was.
   * Fused scores need at least 2 held-out images; with fewer (or `calibration: false`) only
   * {@link Ensemble.scoreMembers} works. Throws ERR_INVALID_OPTION, ERR_INVALID_IMAGE,
   * ERR_EMPTY_TRAINING_SET, ERR_ABORTED.
   * @example
   * const ensemble = await Ensemble.create({ members: [{ backbone: 'random_cnn', seed: 1 }, { backbone: 'random_cnn', seed: 2 }] });
   * const summary = await ensemble.fit(['good/000.png', 'good/001.png', 'good/002.png', 'good/003.png'], { signal });
   */
  fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, options: EnsembleFitOptions = {}): Promise<EnsembleFitSummary> {
    const stack = new Error();
    return this.#exclusive(() => this.#fit(images, options)).catch((err) => rethrow(err, stack));
  }

  /**
   * Scores one image: fused score and map, threshold decision, each member's raw score. Throws
   * ERR_NOT_FITTED (also when fitted without normalisers), ERR_INVALID_IMAGE, ERR_INVALID_OPTION.
   * @example
   * const ensemble = await Ensemble.load('part.rcpe');
   * const { score, normalizedScore, isAnomaly, memberScores, heatmap } = await ensemble.score('frame.png', { heatmap: 'png' });
   */
  score(image: ImageInput, options: ScoreOptions = {}): Promise<EnsembleScoreResult> {
    const stack = new Error();
    return toRawFrame(image)
      .then((frame) => this.#exclusive(async () => this.#fuse((await this.#scoreFrames([frame]))[0], frame, options)))
      .catch((err) => rethrow(err, stack));
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
    return this.#exclusive(async () => {
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
    return this.#exclusive(async () => {
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
    return this.#exclusive(async () => {
      if (typeof file !== 'string' || file === '') throw invalidOption('save expects a file path');
      if (!this.#fitted) throw notFitted();
      const members = await withTempDir(async (dir) => {
        const out: Buffer[] = [];
        for (const [i, m] of this.#members.entries()) {
          const memberFile = path.join(dir, `member-${i}.rcp`);
          await m.save(memberFile);
          out.push(await readFile(memberFile));
        }
        return out;
      });
      const meta: EnsembleMeta = {
        format: 'reconpatch-ensemble',
        members: this.#members.map((m) => ({ backbone: m.info.backbone })),
        calibrationOptions: this.#calibrationOptions,
        ranges: this.#ranges,
        calibration: this.#calibration,
      };
      await writeAtomically(file, buildContainer(meta, members));
    }).catch((err) => rethrow(err, stack));
  }

  // Decodes once, then every member scores the same frames, one batch at a time.
  async *#batches(images: ImageInput[]): AsyncGenerator<{ frames: RawFrame[]; outputs: MemberOutputs[] }> {
    if (!Array.isArray(images)) throw invalidOption('expects an array of images');
    const batchSize = this.#members[0].options.batchSize;
    for (let i = 0; i < images.length; i += batchSize) {
      const frames = await Promise.all(images.slice(i, i + batchSize).map((img, j) => toRawFrame(img, i + j)));
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
      throw new ReconpatchError('ERR_NOT_FITTED', 'this ensemble has no normalisers: it was fitted with calibration off or with too few images to hold out 2; refit with calibration on and at least 4 images, or use scoreMembers + fuseTestMinMax');
    return this.#ranges;
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
    const ranges = this.#requireRanges();
    if (o.scores.length !== ranges.length || o.maps.length !== ranges.length) throw invalidOption(`fuse expects ${ranges.length} member outputs`);
    const k = ranges.length;
    let score = 0;
    const map = new Float32Array(o.maps[0].length);
    for (const [m, r] of ranges.entries()) {
      score += minMax(o.scores[m], r.scoreMin, r.scoreMax) / k;
      const raw = o.maps[m];
      if (raw.length !== map.length) throw invalidOption('fuse: member maps differ in size');
      for (let p = 0; p < map.length; p++) map[p] += minMax(raw[p], r.mapMin, r.mapMax) / k;
    }
    return { score, map };
  }

  async #fuse(o: MemberOutputs, frame: RawFrame, { heatmap }: ScoreOptions): Promise<EnsembleScoreResult> {
    const { score, map } = this.fuse(o);
    const c = this.#calibration as Calibration; // set together with the ranges
    const normalizedScore = normalize(score, c);
    const result: EnsembleScoreResult = { score, normalizedScore, isAnomaly: normalizedScore >= 0.5, map, width: o.width, height: o.height, memberScores: [...o.scores] };
    if (heatmap === 'png') {
      const scaled = new Float32Array(map.length);
      for (let p = 0; p < map.length; p++) scaled[p] = normalize(map[p], c);
      result.heatmap = await heatmapPng(frame, scaled);
    } else if (heatmap !== undefined && heatmap !== false) {
      throw invalidOption(`heatmap must be 'png' or false, got ${JSON.stringify(heatmap)}`);
    }
    return result;
  }

  #exclusive<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => undefined);
    return run;
  }

  async #fit(images: Iterable<ImageInput> | AsyncIterable<ImageInput>, { signal, onProgress }: EnsembleFitOptions): Promise<EnsembleFitSummary> {
    if (images === null || typeof images !== 'object' || !(Symbol.iterator in images || Symbol.asyncIterator in images))
      throw invalidOption('fit expects an Iterable or AsyncIterable of images');
    const started = performance.now();
    const aborted = () => new ReconpatchError('ERR_ABORTED', 'fit was aborted; the ensemble keeps its previous state');
    const all: ImageInput[] = [];
    for await (const image of images as AsyncIterable<ImageInput>) {
      if (signal?.aborted) throw aborted();
      all.push(image);
    }
    if (all.length === 0) throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', 'fit received no images; pass at least one image of a good (defect-free) part');
    const { holdout, minImages } = this.#calibrationOptions;
    const heldOut = holdoutPicker(all.length, holdout, minImages);
    let bank = all.filter((_, i) => !heldOut(i));
    let calibrationImages = all.filter((_, i) => heldOut(i));
    if (bank.length === 0) [bank, calibrationImages] = [calibrationImages, []];

    // Fresh engines when refitting, so that a failure keeps the fitted members.
    const members: Engine[] = [];
    for (let i = 0; i < this.#members.length; i++) members.push(this.#fitted ? await this.#fresh(i) : this.#members[i]);
    const summaries: FitSummary[] = [];
    for (const [i, m] of members.entries()) {
      if (signal?.aborted) throw aborted();
      summaries.push(await m.fit(bank, { signal, onProgress: onProgress && ((p) => onProgress({ ...p, member: i })) }));
    }

    let ranges: MemberRange[] | null = null;
    let calibration: Calibration | null = null;
    if (calibrationImages.length >= 2) {
      // Raw held-out outputs per member, then ranges; the fused values follow from them linearly.
      const scores: number[][] = members.map(() => []);
      const stats = members.map(() => ({ mapMin: Infinity, mapMax: -Infinity, mapSum: 0, pixels: 0 }));
      const batchSize = members[0].options.batchSize;
      for (let i = 0; i < calibrationImages.length; i += batchSize) {
        if (signal?.aborted) throw aborted();
        const frames = await Promise.all(calibrationImages.slice(i, i + batchSize).map((img) => toRawFrame(img)));
        for (const [m, member] of members.entries()) {
          for (const r of await member.scoreMany(frames)) {
            scores[m].push(r.score);
            const s = stats[m];
            for (const v of r.map) {
              if (v < s.mapMin) s.mapMin = v;
              if (v > s.mapMax) s.mapMax = v;
              s.mapSum += v;
            }
            s.pixels += r.map.length;
          }
        }
        onProgress?.({ stage: 'calibrate', done: Math.min(i + batchSize, calibrationImages.length), total: calibrationImages.length });
      }
      ranges = members.map((_, m) => ({
        scoreMin: Math.min(...scores[m]), scoreMax: Math.max(...scores[m]), mapMin: stats[m].mapMin, mapMax: stats[m].mapMax,
      }));
      const fusedScores = calibrationImages.map((_, i) => ranges!.reduce((s, r, m) => s + minMax(scores[m][i], r.scoreMin, r.scoreMax), 0) / members.length);
      // Every member's maps have the same pixels (the images' own sizes), so the fused maps' mean
      // pixel is the mean of the members' normalised mean pixels.
      const fusedMapMean = ranges.reduce((s, r, m) => s + minMax(stats[m].mapSum / stats[m].pixels, r.mapMin, r.mapMax), 0) / members.length;
      calibration = calibrate(fusedScores, [Float32Array.of(fusedMapMean)]);
    }
    if (signal?.aborted) throw aborted();
    this.#members = members;
    this.#ranges = ranges;
    this.#calibration = calibration;
    this.#fitted = true;
    return { images: bank.length, calibrationImages: calibrationImages.length, members: summaries, seconds: (performance.now() - started) / 1000 };
  }
}

function invalidOption(message: string): ReconpatchError {
  return new ReconpatchError('ERR_INVALID_OPTION', message);
}

function notFitted(): ReconpatchError {
  return new ReconpatchError('ERR_NOT_FITTED', 'the ensemble is not fitted; call fit() with images of good parts first');
}

async function withTempDir<T>(fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'reconpatch-ensemble-'));
  try {
    return await fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

// An unfitted engine with the same options and backbone as a loaded member: a save/load round
// trip (the model file carries the backbone itself, whose original path may be gone).
async function cloneUnfitted(member: Engine): Promise<Engine> {
  return withTempDir(async (dir) => {
    const file = path.join(dir, 'member.rcp');
    await member.save(file);
    return Engine.load(file);
  });
}

/** Container layout: magic | u32 version | u32 sections | (4-byte tag, u64 length, bytes)* | sha256 of all before. */
function buildContainer(meta: EnsembleMeta, members: Buffer[]): Buffer {
  const sections: [string, Buffer][] = [['META', Buffer.from(JSON.stringify(meta))], ...members.map((m): [string, Buffer] => ['MEMB', m])];
  const header = Buffer.alloc(8);
  header.writeUInt32LE(FORMAT_VERSION, 0);
  header.writeUInt32LE(sections.length, 4);
  const parts: Buffer[] = [MAGIC, header];
  for (const [tag, body] of sections) {
    const head = Buffer.alloc(12);
    head.write(tag, 0, 'latin1');
    head.writeBigUInt64LE(BigInt(body.length), 4);
    parts.push(head, body);
  }
  const hash = createHash('sha256');
  for (const p of parts) hash.update(p);
  parts.push(hash.digest());
  return Buffer.concat(parts);
}

function parseContainer(bytes: Buffer, file: string): { meta: EnsembleMeta; members: Buffer[] } {
  const damaged = (why: string) => new ReconpatchError('ERR_MODEL_FILE', `'${file}' is not a valid reconpatch ensemble model (${why}); re-save it or refit`);
  if (bytes.length < MAGIC.length + 8 + 32 || !bytes.subarray(0, MAGIC.length).equals(MAGIC)) throw damaged('no ensemble header');
  const version = bytes.readUInt32LE(MAGIC.length);
  if (version !== FORMAT_VERSION) throw damaged(`format version ${version}, this reconpatch reads ${FORMAT_VERSION}`);
  const body = bytes.subarray(0, bytes.length - 32);
  if (!createHash('sha256').update(body).digest().equals(bytes.subarray(bytes.length - 32))) throw damaged('checksum mismatch: the file is damaged or truncated');
  const count = bytes.readUInt32LE(MAGIC.length + 4);
  if (count < 2 || count > MAX_MEMBERS + 1) throw damaged(`${count} sections`);
  let at = MAGIC.length + 8;
  const sections: [string, Buffer][] = [];
  for (let s = 0; s < count; s++) {
    if (at + 12 > body.length) throw damaged('truncated section header');
    const tag = body.toString('latin1', at, at + 4);
    const length = body.readBigUInt64LE(at + 4);
    at += 12;
    if (length > BigInt(Math.min(MAX_SECTION, body.length - at))) throw damaged(`section ${tag} overruns the file`);
    sections.push([tag, body.subarray(at, at + Number(length))]);
    at += Number(length);
  }
  if (at !== body.length) throw damaged('trailing bytes after the last section');
  if (sections[0][0] !== 'META' || sections.slice(1).some(([tag]) => tag !== 'MEMB')) throw damaged('unexpected sections');
  let meta: EnsembleMeta;
  try {
    meta = JSON.parse(sections[0][1].toString('utf8')) as EnsembleMeta;
  } catch {
    throw damaged('unreadable META section');
  }
  const members = sections.slice(1).map(([, b]) => b);
  const finite = (x: unknown) => typeof x === 'number' && Number.isFinite(x);
  const ok =
    meta?.format === 'reconpatch-ensemble' &&
    Array.isArray(meta.members) && meta.members.length === members.length && meta.members.every((m) => typeof m?.backbone === 'string') &&
    finite(meta.calibrationOptions?.holdout) && finite(meta.calibrationOptions?.minImages) &&
    (meta.ranges === null
      ? meta.calibration === null
      : Array.isArray(meta.ranges) && meta.ranges.length === members.length &&
        meta.ranges.every((r) => finite(r?.scoreMin) && finite(r?.scoreMax) && finite(r?.mapMin) && finite(r?.mapMax) && r.scoreMax >= r.scoreMin && r.mapMax >= r.mapMin) &&
        meta.calibration !== null && ['images', 'scoreMean', 'scoreStd', 'threshold', 'low'].every((k) => finite((meta.calibration as unknown as Record<string, unknown>)[k])));
  if (!ok) throw damaged('inconsistent META section');
  return { meta, members };
}

async function writeAtomically(file: string, bytes: Buffer): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  try {
    const handle = await open(tmp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(tmp, file);
  } catch (err) {
    await unlink(tmp).catch(() => undefined);
    throw new ReconpatchError('ERR_IO', `cannot write ensemble model '${file}' (${(err as NodeJS.ErrnoException).code ?? String(err)}); check the directory exists and is writable`, { cause: err });
  }
}
