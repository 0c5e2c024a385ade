/**
 * Evaluation on a folder of good images only (no defect examples yet, as on a new line): part of
 * the images is held out, the engine fits and calibrates on the rest as a deployment would, and
 * the held-out images are scored as they are and with synthetic defects painted on them (the head
 * check's, ../head_check/defects.ts: 6 kinds × 3 sizes per image). Reports the false alarms on the
 * held-out good images and the recall on synthetic defects at the deployed threshold, by kind and
 * size, and the synthetic image AUROC. How far synthetic recall predicts real recall is measured
 * in docs/results.md ("Synthetic defects as an evaluation").
 */
import { Engine } from '../engine/engine.js';
import type { Progress } from '../engine/staged_fit.js';
import { ReconpatchError } from '../errors.js';
import { DEFECT_KINDS, synthesizeDefects } from '../head_check/defects.js';
import { evenlySpread } from '../holdout.js';
import { resolveInput, toRawFrame } from '../io/images.js';
import type { RawFrame } from '../native.js';
import type { EngineOptions } from '../options.js';
import { listImages } from './dataset.js';
import { auroc } from './metrics.js';

/** Share of the images held out (spread evenly over the folder's sorted order), within [min, max]. */
export const GOOD_ONLY_HOLDOUT = { share: 0.2, min: 4, max: 40 } as const;
/** Fewer images than this cannot give a fit and a held-out set worth reporting. */
export const GOOD_ONLY_MIN_IMAGES = 12;

export interface GoodOnlyOptions {
  /** Fit progress. */
  onProgress?: (p: Progress) => void;
  /** Scoring progress: frames scored so far, of `total`. */
  onScored?: (done: number, total: number) => void;
}

/** Recall at the threshold over a group of synthetic defects. */
interface Recall {
  flagged: number;
  defects: number;
  recall: number;
}

/**
 * Fits on the folder's good images minus a held-out share and measures, at the deployed
 * threshold, false alarms on the held-out images and recall on synthetic defects painted on them.
 * The defects are seeded by the engine's `seed`.
 * @example
 * const row = await evaluateGoodOnly('parts/good', { backbone: 'mobilenet_v1_imagenet.pt' });
 * console.log(row.synthetic_recall, row.false_alarm_rate);
 */
export async function evaluateGoodOnly(dir: string, options: EngineOptions, { onProgress, onScored }: GoodOnlyOptions = {}) {
  const files = await listImages(dir);
  if (files.length < GOOD_ONLY_MIN_IMAGES)
    throw new ReconpatchError('ERR_EMPTY_TRAINING_SET', `an evaluation on good images only needs at least ${GOOD_ONLY_MIN_IMAGES} images (found ${files.length} in '${dir}')`);
  const held = Math.min(GOOD_ONLY_HOLDOUT.max, Math.max(GOOD_ONLY_HOLDOUT.min, Math.round(GOOD_ONLY_HOLDOUT.share * files.length)));
  const isHeld = evenlySpread(held, files.length);
  const fitFiles = files.filter((_, i) => !isHeld(i));
  const heldFiles = files.filter((_, i) => isHeld(i));

  const engine = await Engine.create(options);
  try {
    const fit = await engine.fit(fitFiles, { onProgress });
    const calibration = engine.info.calibration;
    if (!calibration) throw new ReconpatchError('ERR_INVALID_OPTION', 'an evaluation on good images only reports recall at the deployed threshold: leave calibration on');
    const policy = { ...resolveInput(undefined), resizes: [] };
    const good: RawFrame[] = [];
    for (const [i, f] of heldFiles.entries()) good.push(await toRawFrame(f, i, policy));
    const defects = synthesizeDefects(good, engine.options.seed);
    const frames = [...good, ...defects.map((d) => d.frame)];
    const scores: number[] = [];
    const started = performance.now();
    for (let i = 0; i < frames.length; i += 8) {
      for (const r of await engine.scoreMany(frames.slice(i, i + 8))) scores.push(r.score);
      onScored?.(scores.length, frames.length);
    }
    const scoreMs = (performance.now() - started) / frames.length;
    const goodScores = scores.slice(0, good.length);
    const defectScores = scores.slice(good.length);
    const t = calibration.threshold;
    const recallOf = (keep: (k: number) => boolean): Recall => {
      const s = defectScores.filter((_, k) => keep(k));
      const flagged = s.filter((x) => x > t).length;
      return { flagged, defects: s.length, recall: flagged / s.length };
    };
    const sizes = [...new Set(defects.map((d) => d.size))];
    const goodFlagged = goodScores.filter((x) => x > t).length;
    return {
      folder: dir,
      backbone: engine.info.backbone,
      head: engine.options.head,
      seed: engine.options.seed,
      n_fit: fitFiles.length,
      n_held_out: good.length,
      n_synthetic: defects.length,
      threshold: t,
      threshold_method: calibration.method,
      false_alarm_target: calibration.falseAlarmRate,
      good_flagged: goodFlagged,
      false_alarm_rate: goodFlagged / good.length,
      synthetic_auroc: auroc(scores, scores.map((_, k) => (k < good.length ? 0 : 1))),
      synthetic_recall: recallOf(() => true).recall,
      synthetic_flagged: recallOf(() => true).flagged,
      recall_by_kind: Object.fromEntries(DEFECT_KINDS.map((kind) => [kind, recallOf((k) => defects[k].kind === kind).recall])),
      recall_by_size: Object.fromEntries(sizes.map((z) => [String(z), recallOf((k) => defects[k].size === z).recall])),
      warnings: [...new Set([...fit.warnings, ...calibration.warnings])],
      fit_seconds: fit.seconds,
      score_ms_per_image: scoreMs,
    };
  } finally {
    await engine.dispose();
  }
}
