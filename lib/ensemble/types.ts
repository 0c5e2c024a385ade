/**
 * The public types of {@link Ensemble}'s options and answers (apart from the class, so that
 * ensemble.ts holds the behaviour).
 */
import type { Calibration } from '../calibration.js';
import type { EngineInfo, FitSummary, ModelInfo } from '../engine/engine.js';
import type { ScoreResult } from '../engine/results.js';
import type { StreamItem } from '../engine/scorer.js';
import type { Progress } from '../engine/staged_fit.js';
import type { InputOptions } from '../io/images.js';
import type { NativeOptions } from '../native.js';
import type { EngineOptions } from '../options.js';
import type { MemberRange } from './fusion.js';

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
  /** The ensemble's id, as {@link FitOptions.modelId}. */
  modelId?: string;
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
export type EnsembleStreamItem = StreamItem<EnsembleScoreResult>;

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
  /** The ensemble's identity and provenance, as {@link EngineInfo.model} (hash over the members' and the normalisers); null before a fit. */
  model: ModelInfo | null;
  /** Threshold statistics of the fused held-out scores, or null. */
  calibration: Calibration | null;
}
