/**
 * Post-processing, kept apart from the engine's raw distances (as anomalib does): calibration
 * statistics from held-out nominal images only, and the score normalisation built on them.
 *
 *   threshold = mean + 3 * std of the held-out images' scores
 *   low       = mean pixel value of the held-out images' maps (a typical nominal distance)
 *   normalised(v) = clamp(0.5 * (v - low) / (threshold - low), 0, 1)
 *
 * so 0.5 is exactly the threshold, for image scores and map pixels alike. Test labels are never
 * used.
 */

/**
 * Threshold statistics of a fit's held-out nominal images (see the module comment above).
 * @example
 * const c: Calibration | null = engine.info.calibration;
 * if (c) console.log(`threshold ${c.threshold} = ${c.scoreMean} + 3 x ${c.scoreStd}`);
 */
export interface Calibration {
  /** Held-out nominal images the statistics come from. */
  images: number;
  /** Mean of their raw image scores. */
  scoreMean: number;
  /** Standard deviation of their raw image scores. */
  scoreStd: number;
  /** Raw score at which `normalizedScore` is 0.5 and `isAnomaly` turns true. */
  threshold: number;
  /** Mean map value over the held-out images: normalised 0. */
  low: number;
}

/** Statistics from the raw scores and maps of held-out nominal images. */
export function calibrate(scores: number[], maps: Float32Array[]): Calibration {
  if (scores.length === 0) throw new RangeError('calibrate: needs at least one held-out image');
  const mean = scores.reduce((s, x) => s + x, 0) / scores.length;
  const variance = scores.length > 1 ? scores.reduce((s, x) => s + (x - mean) ** 2, 0) / (scores.length - 1) : 0;
  // A floor on the spread keeps the threshold above the nominal scores when they barely vary.
  const std = Math.max(Math.sqrt(variance), 0.02 * Math.abs(mean));
  let sum = 0;
  let count = 0;
  for (const m of maps) {
    for (let i = 0; i < m.length; i++) sum += m[i];
    count += m.length;
  }
  const threshold = mean + 3 * std;
  const low = Math.min(count ? sum / count : 0, mean);
  return { images: scores.length, scoreMean: mean, scoreStd: std, threshold, low };
}

/** Raw distance -> [0, 1], 0.5 at the threshold. */
export function normalize(value: number, c: Calibration): number {
  const span = c.threshold - c.low;
  if (!(span > 0)) return value >= c.threshold ? 1 : 0;
  return Math.min(1, Math.max(0, (0.5 * (value - c.low)) / span));
}

/**
 * Which images to hold out for calibration: `share` of them spread evenly, at least
 * `minImages`, never more than half. For inputs of unknown length: every round(1 / share)-th.
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

/**
 * Statistics of two sets of held-out images as one (counts-weighted mean and pooled variance),
 * e.g. the fit's and an update's. The spread floor and threshold rule are those of {@link calibrate}.
 */
export function poolCalibrations(a: Calibration, b: Calibration): Calibration {
  const n = a.images + b.images;
  const mean = (a.images * a.scoreMean + b.images * b.scoreMean) / n;
  const ss = (c: Calibration) => Math.max(c.images - 1, 0) * c.scoreStd ** 2 + c.images * (c.scoreMean - mean) ** 2;
  const std = Math.max(Math.sqrt((ss(a) + ss(b)) / Math.max(n - 1, 1)), 0.02 * Math.abs(mean));
  const low = Math.min((a.images * a.low + b.images * b.low) / n, mean);
  return { images: n, scoreMean: mean, scoreStd: std, threshold: mean + 3 * std, low };
}

