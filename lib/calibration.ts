/**
 * Post-processing, kept apart from the engine's raw distances (as anomalib does): the decision
 * thresholds and the score normalisation built on them.
 *
 * **From nominal data (the default, at fit).** Evidence: every fit image (up to
 * `calibration.maxImages`, spread evenly) scored against the fitted bank *without the rows it
 * contributed* (leave-one-image-out, native `fitEnd`), so each score is what a good part the bank
 * has not seen gets. The rule, fixed before any test data was looked at:
 *
 *   An image score is the largest of many patch distances, so by extreme-value theory its
 *   distribution over good parts is close to a Gumbel. Fit one robustly from the quartiles of the
 *   nominal scores (β = IQR / 1.5725, μ = median − 0.3665 β: up to a quarter of the evidence can
 *   be anything, e.g. a defective image among the good ones, without moving it), and put the
 *   threshold at its (1 − α) quantile, μ − β ln(−ln(1 − α)), with α = `falseAlarmRate`
 *   (default 1%: about one good part in a hundred flagged).
 *
 * The pixel threshold (regions, contours) is the same rule on each nominal image's map maximum:
 * a good part shows a region above it with probability about α. The colour floor of heatmaps is
 * the median of those maxima (what a typical good part reaches at its worst pixel).
 *
 *   normalised(v) = max(0, 0.5 · (v − low) / (threshold − low)),  low = mean nominal map pixel
 *
 * so 0.5 is exactly the threshold, and the value keeps rising above it (no clamp at 1: two
 * different defects read differently). Test labels are never used.
 *
 * **From labelled images** ({@link thresholdFromLabels}, `engine.calibrate(images, { labels })`):
 * the threshold that maximises F1 on them, or the highest one that reaches a target recall.
 */

/** Fewer nominal images than this, and the warning says the threshold rests on thin evidence. */
export const THIN_EVIDENCE = 30;

/** Default target false-alarm rate of the nominal rule. */
export const DEFAULT_FALSE_ALARM_RATE = 0.01;

/**
 * Decision thresholds and what they were set from (see the module comment above).
 * @example
 * const c: Calibration | null = engine.info.calibration;
 * if (c) console.log(`threshold ${c.threshold} (${c.method}, ${c.images} images), pixels ${c.pixelThreshold}`);
 */
export interface Calibration {
  /**
   * Where the threshold came from: `'leave-one-out'` (nominal fit images, the default),
   * `'holdout'` (nominal images held out of the bank), `'labels'` (labelled validation images),
   * `'manual'` (set by hand), `'legacy'` (a model file from before these thresholds: mean + 3 std
   * of 3-6 held-out images).
   */
  method: 'leave-one-out' | 'holdout' | 'labels' | 'manual' | 'legacy';
  /** Images the statistics come from. */
  images: number;
  /** Target false-alarm rate of the nominal rule; null when the threshold was set otherwise. */
  falseAlarmRate: number | null;
  /** Raw image score at which `normalizedScore` is 0.5 and `isAnomaly` turns true. */
  threshold: number;
  /** Raw map value above which a pixel belongs to a flagged region (contours). */
  pixelThreshold: number;
  /** Raw map value below which heatmaps leave the image untinted. */
  pixelFloor: number;
  /** Mean nominal map value: normalised 0. */
  low: number;
  /** Median of the nominal image scores. */
  scoreMedian: number;
  /** Mean of the nominal image scores. */
  scoreMean: number;
  /** Standard deviation of the nominal image scores. */
  scoreStd: number;
  /** Share of the nominal evidence at or above the threshold (a check of the fitted tail); null without nominal evidence. */
  nominalAboveThreshold: number | null;
  /** Labelled calibration: precision, recall and false-alarm rate on those images at the threshold. */
  validation?: { images: number; defects: number; precision: number; recall: number; falseAlarmRate: number; objective: string };
  /** Why this threshold deserves less trust than usual (thin evidence, ...). Empty when none. */
  warnings: string[];
  /**
   * The nominal evidence the threshold was set from (one entry per image; at most
   * {@link MAX_STORED_EVIDENCE}), kept so that `update` can pool new evidence with it. Absent for
   * thresholds set by labels or by hand and in older files.
   */
  evidence?: NominalEvidence[];
}

/** One nominal image's evidence: its score and its map's range and mean. */
export interface NominalEvidence {
  score: number;
  mapMin: number;
  mapMax: number;
  mapMean: number;
}

/** Quantile p of sorted values (linear interpolation between order statistics, numpy's default). */
export function quantile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const at = p * (sorted.length - 1);
  const lo = Math.floor(at);
  const hi = Math.min(sorted.length - 1, lo + 1);
  return sorted[lo] + (at - lo) * (sorted[hi] - sorted[lo]);
}

/**
 * The Gumbel fitted to `values` from their quartiles, and its quantile 1 − α. The scale has a
 * floor (1% of the median's size) so that identical values still give a threshold above them.
 */
export function gumbelThreshold(values: number[], alpha: number): { threshold: number; mu: number; beta: number; median: number } {
  const sorted = [...values].sort((a, b) => a - b);
  const median = quantile(sorted, 0.5);
  const iqr = quantile(sorted, 0.75) - quantile(sorted, 0.25);
  // Gumbel quantile Q(p) = μ − β ln(−ln p): Q(3/4) − Q(1/4) = β (ln ln 4 − ln ln 4/3) = 1.5725 β.
  const beta = Math.max(iqr / (Math.log(Math.log(4)) - Math.log(Math.log(4 / 3))), 0.01 * Math.abs(median), 1e-12);
  const mu = median + beta * Math.log(Math.log(2));
  return { threshold: mu - beta * Math.log(-Math.log(1 - alpha)), mu, beta, median };
}

/**
 * The levels that nominal evidence alone sets, whatever the thresholds: `low` (normalised 0: the
 * mean nominal map pixel, kept below the median image score and map maximum) and the heatmap floor.
 * Recomputed from the stored evidence when a threshold is set by hand, so that setting the
 * calibrated threshold back gives back the calibrated normalisation exactly.
 */
export function nominalLevels(evidence: NominalEvidence[]): { low: number; pixelFloor: number } {
  const median = (values: number[]) => quantile([...values].sort((a, b) => a - b), 0.5);
  const mapMean = evidence.reduce((s, e) => s + e.mapMean, 0) / evidence.length;
  const mapMaxMedian = median(evidence.map((e) => e.mapMax));
  const low = Math.min(mapMean, median(evidence.map((e) => e.score)), mapMaxMedian);
  return { low, pixelFloor: Math.max(mapMaxMedian, low) };
}

/** Thresholds from nominal evidence (the rule in the module comment). Needs at least 2 images. */
export function calibrateNominal(evidence: NominalEvidence[], falseAlarmRate: number, method: 'leave-one-out' | 'holdout'): Calibration {
  if (evidence.length < 2) throw new RangeError('calibrateNominal: needs at least two nominal images');
  const scores = evidence.map((e) => e.score);
  const image = gumbelThreshold(scores, falseAlarmRate);
  const pixel = gumbelThreshold(evidence.map((e) => e.mapMax), falseAlarmRate);
  const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
  const std = Math.sqrt(scores.reduce((s, x) => s + (x - mean) ** 2, 0) / (scores.length - 1));
  const { low } = nominalLevels(evidence);
  const warnings: string[] = [];
  if (evidence.length < THIN_EVIDENCE)
    warnings.push(
      `the threshold rests on ${evidence.length} nominal images (fewer than ${THIN_EVIDENCE}): its false-alarm rate may be far from the ${pct(falseAlarmRate)} target; ` +
        'fit on more images of good parts, or calibrate on labelled validation images (engine.calibrate(images, { labels }))',
    );
  return {
    method, images: evidence.length, falseAlarmRate,
    threshold: image.threshold,
    pixelThreshold: Math.max(pixel.threshold, low),
    pixelFloor: nominalLevels(evidence).pixelFloor,
    low,
    scoreMedian: image.median, scoreMean: mean, scoreStd: std,
    nominalAboveThreshold: scores.filter((s) => s >= image.threshold).length / scores.length,
    warnings,
    evidence: evidence.map(({ score, mapMin, mapMax, mapMean }) => ({ score, mapMin, mapMax, mapMean })),
  };
}

/**
 * What to optimise when labelled images set the threshold: `'f1'`, or `{ recall }` (the highest
 * threshold that flags at least that share of the defective images).
 * @example
 * const objective: LabelObjective = { recall: 0.95 };
 * const labels = goodImages.map((p) => (p.includes('/defect/') ? 1 : 0));
 * await engine.calibrate(goodImages, { labels, objective });
 */
export type LabelObjective = 'f1' | { recall: number };

/**
 * The image threshold from labelled scores (label 1 = defective): the one that maximises F1, or
 * the highest whose recall reaches the target. Candidates are the defective images' scores (a
 * threshold at a defect's score flags it). Returns the threshold and the metrics it gives on
 * these images. Throws RangeError without at least one defective image.
 */
export function thresholdFromLabels(scores: number[], labels: number[], objective: LabelObjective): { threshold: number; precision: number; recall: number; falseAlarmRate: number } {
  const defects = labels.filter((l) => l === 1).length;
  const good = labels.length - defects;
  if (defects === 0) throw new RangeError('thresholdFromLabels: needs at least one defective image (label 1)');
  const metrics = (t: number) => {
    let tp = 0;
    let fp = 0;
    for (const [i, s] of scores.entries()) if (s >= t) labels[i] === 1 ? tp++ : fp++;
    return { threshold: t, precision: tp + fp ? tp / (tp + fp) : 1, recall: tp / defects, falseAlarmRate: good ? fp / good : 0 };
  };
  const candidates = [...new Set(scores.filter((_, i) => labels[i] === 1))].sort((a, b) => b - a); // highest first
  if (objective === 'f1') {
    let best = metrics(candidates[0]);
    const f1 = (m: ReturnType<typeof metrics>) => (m.precision + m.recall ? (2 * m.precision * m.recall) / (m.precision + m.recall) : 0);
    for (const t of candidates) {
      const m = metrics(t);
      if (f1(m) > f1(best)) best = m;
    }
    return best;
  }
  for (const t of candidates) {
    const m = metrics(t);
    if (m.recall >= objective.recall - 1e-12) return m;
  }
  return metrics(candidates[candidates.length - 1]);
}

/** Raw distance -> [0, ∞), 0.5 at the threshold, rising above it without bound. */
export function normalize(value: number, c: Calibration): number {
  const span = c.threshold - c.low;
  if (!(span > 0)) return value >= c.threshold ? 1 : 0;
  return Math.max(0, (0.5 * (value - c.low)) / span);
}

/**
 * A calibration as stored in a model file's metadata, brought to today's shape: files written
 * before the pixel threshold existed (mean + 3 std; `{ images, scoreMean, scoreStd, threshold,
 * low }`) keep their threshold, and their contours stay where they were drawn (at the same
 * threshold on the map). Returns null for anything that is not a calibration.
 */
export function upgradeCalibration(stored: unknown): Calibration | null {
  if (stored === null || typeof stored !== 'object') return null;
  const c = stored as Partial<Calibration> & Record<string, unknown>;
  const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
  if (!finite(c.threshold) || !finite(c.low)) return null;
  if (typeof c.method === 'string' && finite(c.pixelThreshold) && finite(c.pixelFloor)) {
    // Stored evidence that is not a list of finite numbers is dropped (an update then starts afresh).
    const evidence = Array.isArray(c.evidence) && c.evidence.every((e) => e !== null && typeof e === 'object' && finite(e.score) && finite(e.mapMin) && finite(e.mapMax) && finite(e.mapMean))
      ? c.evidence : undefined;
    return { ...c, evidence, warnings: Array.isArray(c.warnings) ? c.warnings : [] } as Calibration;
  }
  return {
    method: 'legacy', images: finite(c.images) ? c.images : 0, falseAlarmRate: null,
    threshold: c.threshold, pixelThreshold: c.threshold, pixelFloor: c.low, low: c.low,
    scoreMedian: finite(c.scoreMean) ? c.scoreMean : c.threshold, scoreMean: finite(c.scoreMean) ? c.scoreMean : c.threshold,
    scoreStd: finite(c.scoreStd) ? c.scoreStd : 0, nominalAboveThreshold: null,
    warnings: ['this model was calibrated by an older reconpatch (mean + 3 std of a few held-out images); refit or calibrate it again for a threshold with a stated false-alarm rate'],
  };
}

/**
 * Which images to hold out for calibration (`calibration.holdout` > 0): `share` of them spread
 * evenly, at least `minImages`, never more than half. For inputs of unknown length: every
 * round(1 / share)-th.
 */
export function holdoutPicker(total: number | undefined, share: number, minImages: number): (index: number) => boolean {
  if (share <= 0) return () => false;
  if (total === undefined) {
    const every = Math.max(2, Math.round(1 / share));
    return (i) => i % every === every - 1;
  }
  const h = Math.min(Math.max(minImages, Math.round(share * total)), Math.floor(total / 2));
  return (i) => Math.floor(((i + 1) * h) / total) > Math.floor((i * h) / total);
}

/** A map's minimum, maximum and mean over its inspected pixels (NaN = not inspected). */
export function mapStats(map: Float32Array): { mapMin: number; mapMax: number; mapMean: number } {
  let lo = Infinity;
  let hi = -Infinity;
  let sum = 0;
  let n = 0;
  for (const v of map) {
    if (Number.isNaN(v)) continue;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
    sum += v;
    n++;
  }
  return n ? { mapMin: lo, mapMax: hi, mapMean: sum / n } : { mapMin: 0, mapMax: 0, mapMean: 0 };
}

function pct(x: number): string {
  return `${+(100 * x).toFixed(3)}%`;
}

/** At most this many nominal images' evidence is kept in a calibration (for updates to pool with). */
export const MAX_STORED_EVIDENCE = 1000;

/**
 * An update's calibration: the new images' evidence (each scored against the grown bank without
 * its own patches) pooled with the evidence stored in the previous calibration, and the nominal
 * rule applied to the pool. The earlier images were scored against the smaller bank, so their
 * scores are, if anything, a little high: the pooled threshold errs towards fewer false alarms.
 * A threshold the user chose (labels, by hand) is kept, with the pooled evidence carried along.
 * A previous calibration without stored evidence (an older file) is kept when the new evidence is
 * thin, and otherwise replaced by one from the new evidence alone, with a warning. Returns null
 * when there is nothing to calibrate on.
 */
export function poolNominal(previous: Calibration | null, fresh: NominalEvidence[], falseAlarmRate: number): Calibration | null {
  let pool = [...(previous?.evidence ?? []), ...fresh];
  if (pool.length > MAX_STORED_EVIDENCE) {
    const n = pool.length;
    pool = pool.filter((_, i) => Math.floor(((i + 1) * MAX_STORED_EVIDENCE) / n) > Math.floor((i * MAX_STORED_EVIDENCE) / n));
  }
  if (previous && (previous.method === 'labels' || previous.method === 'manual'))
    return { ...previous, evidence: pool, warnings: [`the threshold set by ${previous.method === 'labels' ? 'labelled images' : 'hand'} was kept through the update; calibrate again if the parts changed`] };
  if (previous && !previous.evidence) {
    if (fresh.length < THIN_EVIDENCE) return previous;
    const c = calibrateNominal(fresh, falseAlarmRate, 'leave-one-out');
    c.warnings.push(`the previous threshold (${previous.method}) kept no nominal evidence; it was replaced by one from the ${fresh.length} new images alone`);
    return c;
  }
  return pool.length >= 2 ? calibrateNominal(pool, falseAlarmRate, 'leave-one-out') : previous;
}

