/**
 * Setting thresholds after a fit, shared by `Engine` and `Ensemble`: from images scored now
 * (`calibrate(images, { labels })`) or by hand (`setThreshold`). The nominal rule itself lives in
 * ../calibration.ts.
 */
import { type Calibration, type LabelObjective, type NominalEvidence, calibrateNominal, mapStats, nominalLevels, thresholdFromLabels } from '../calibration.js';
import { ReconpatchError } from '../errors.js';

/**
 * Options of {@link Engine.calibrate} and {@link Ensemble.calibrate}.
 * @example
 * await engine.calibrate(['good1.png', 'good2.png', 'crack1.png', 'dent1.png'], { labels: [0, 0, 1, 1], objective: { recall: 0.9 } });
 */
export interface CalibrateOptions {
  /** One label per image: 1 (or true) = defective, 0 (or false) = good. Omitted: every image is a good part. */
  labels?: (number | boolean)[];
  /** With labels: `'f1'` (default) maximises F1 on them; `{ recall: r }` takes the highest threshold that flags at least a share r of the defective images. */
  objective?: LabelObjective;
  /** Without labels: the target false-alarm rate of the nominal rule (default: the engine's `calibration.falseAlarmRate`). */
  falseAlarmRate?: number;
}

const invalid = (message: string) => new ReconpatchError('ERR_INVALID_OPTION', message);

/** Throws ERR_INVALID_OPTION for calibrate options that cannot apply to `count` images. */
export function checkCalibrateOptions(options: CalibrateOptions, count: number): { labels: number[] | null } {
  if (options === null || typeof options !== 'object') throw invalid('calibrate options must be an object');
  for (const key of Object.keys(options))
    if (!['labels', 'objective', 'falseAlarmRate'].includes(key)) throw invalid(`unknown calibrate option '${key}' (known: labels, objective, falseAlarmRate)`);
  const { labels, objective, falseAlarmRate } = options;
  let out: number[] | null = null;
  if (labels !== undefined) {
    if (!Array.isArray(labels) || labels.length !== count || labels.some((l) => l !== 0 && l !== 1 && l !== true && l !== false))
      throw invalid(`labels must be an array of ${count} values, each 0 / 1 (or false / true)`);
    out = labels.map((l) => (l === true || l === 1 ? 1 : 0));
  }
  if (objective !== undefined && objective !== 'f1') {
    const r = (objective as { recall?: unknown })?.recall;
    if (typeof objective !== 'object' || typeof r !== 'number' || !(r > 0 && r <= 1))
      throw invalid(`objective must be 'f1' or { recall: r } with r in (0, 1], got ${JSON.stringify(objective)}`);
  }
  if (falseAlarmRate !== undefined && !(typeof falseAlarmRate === 'number' && falseAlarmRate > 0 && falseAlarmRate <= 0.5))
    throw invalid(`falseAlarmRate must be a number in (0, 0.5], got ${JSON.stringify(falseAlarmRate)}`);
  return { labels: out };
}

/**
 * New thresholds from images scored with the fitted model (see `Engine.calibrate`). `previous`
 * (the fit's calibration) keeps its pixel thresholds when labels set the image threshold.
 */
export function calibrationFromResults(
  results: { score: number; map: Float32Array }[], options: CalibrateOptions, previous: Calibration | null, defaultFalseAlarmRate: number,
): Calibration {
  const { labels } = checkCalibrateOptions(options, results.length);
  const evidence: NominalEvidence[] = results.map((r) => ({ score: r.score, ...mapStats(r.map) }));
  const nominal = labels ? evidence.filter((_, i) => labels[i] === 0) : evidence;
  const alpha = options.falseAlarmRate ?? defaultFalseAlarmRate;
  if (!labels || labels.every((l) => l === 0)) {
    if (nominal.length < 2) throw invalid('calibrate needs at least 2 images of good parts, or labels with at least one defective image');
    return calibrateNominal(nominal, alpha, 'holdout');
  }
  const objective = options.objective ?? 'f1';
  const chosen = thresholdFromLabels(evidence.map((e) => e.score), labels, objective);
  // Pixel thresholds: the fit's (nominal) ones; else from the good images given here; else the
  // image threshold itself.
  const pixels = previous ?? (nominal.length >= 2 ? calibrateNominal(nominal, alpha, 'holdout') : null);
  const mapMean = evidence.reduce((s, e) => s + e.mapMean, 0) / evidence.length;
  const low = Math.min(pixels?.low ?? mapMean, chosen.threshold);
  const scores = (nominal.length ? nominal : evidence).map((e) => e.score).sort((a, b) => a - b);
  const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
  const defects = labels.filter((l) => l === 1).length;
  return {
    method: 'labels', images: results.length, falseAlarmRate: null,
    threshold: chosen.threshold,
    pixelThreshold: pixels?.pixelThreshold ?? chosen.threshold,
    pixelFloor: pixels?.pixelFloor ?? low,
    low,
    scoreMedian: scores[Math.floor(scores.length / 2)], scoreMean: mean,
    scoreStd: Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / Math.max(1, scores.length - 1)),
    nominalAboveThreshold: nominal.length ? nominal.filter((e) => e.score >= chosen.threshold).length / nominal.length : null,
    validation: {
      images: results.length, defects, precision: chosen.precision, recall: chosen.recall, falseAlarmRate: chosen.falseAlarmRate,
      objective: objective === 'f1' ? 'f1' : `recall >= ${objective.recall}`,
    },
    warnings: results.length - defects < 10 || defects < 10
      ? [`the threshold rests on ${defects} defective and ${results.length - defects} good labelled images: with fewer than 10 of either, recall and false-alarm rate on new parts may differ widely from these`]
      : [],
  };
}

/** Throws ERR_INVALID_OPTION unless the thresholds are finite numbers. */
export function checkThreshold(threshold: unknown, options: { pixelThreshold?: unknown }): void {
  if (typeof threshold !== 'number' || !Number.isFinite(threshold)) throw invalid(`threshold must be a finite number (a raw score), got ${JSON.stringify(threshold)}`);
  if (options === null || typeof options !== 'object') throw invalid('setThreshold options must be an object');
  for (const key of Object.keys(options)) if (key !== 'pixelThreshold') throw invalid(`unknown setThreshold option '${key}' (known: pixelThreshold)`);
  const p = options.pixelThreshold;
  if (p !== undefined && (typeof p !== 'number' || !Number.isFinite(p))) throw invalid(`pixelThreshold must be a finite number (a raw map value), got ${JSON.stringify(p)}`);
}

/**
 * `previous` with a threshold set by hand (or a minimal calibration when there was none). `low`
 * and the heatmap floor come from the nominal evidence when the calibration keeps it (not from
 * `previous`, which an earlier threshold may have lowered), lowered only as far as the new
 * thresholds need: setting the calibrated threshold back restores the calibrated normalisation.
 */
export function manualCalibration(previous: Calibration | null, threshold: number, pixelThreshold?: number): Calibration {
  if (previous) {
    const base = previous.evidence?.length ? nominalLevels(previous.evidence) : { low: previous.low, pixelFloor: previous.pixelFloor };
    return {
      ...previous, method: 'manual', falseAlarmRate: null, threshold,
      pixelThreshold: pixelThreshold ?? previous.pixelThreshold,
      pixelFloor: Math.min(base.pixelFloor, pixelThreshold ?? base.pixelFloor),
      low: Math.min(base.low, threshold),
      nominalAboveThreshold: null, validation: undefined, warnings: [],
    };
  }
  const pixel = pixelThreshold ?? threshold;
  return {
    method: 'manual', images: 0, falseAlarmRate: null, threshold, pixelThreshold: pixel, pixelFloor: 0.5 * pixel, low: Math.min(0, threshold),
    scoreMedian: threshold, scoreMean: threshold, scoreStd: 0, nominalAboveThreshold: null, warnings: [],
  };
}

/** Why a fit with calibration on ended without thresholds. */
export function missingCalibrationWarning(images: number): string {
  return `no threshold: calibration needs at least 2 nominal images and got ${images}; results carry no normalizedScore or isAnomaly until ` +
    'the engine is fitted on more images, calibrated (calibrate()), or given a threshold (setThreshold())';
}
