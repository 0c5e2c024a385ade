/**
 * Post-processing of one raw result (a score and a map, from one engine or fused from an
 * ensemble's members): the calibrated score, the verdict and, when asked, the heatmap PNG.
 */
import { type Calibration, normalize } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { heatmapPng } from '../heatmap.js';
import type { RawFrame } from '../native.js';

/**
 * One image's result. `map` is the anomaly map, row-major `height` x `width`, at the input's size.
 * @example
 * const r: ScoreResult = await engine.score('frame.png');
 * const centre = r.map[Math.floor(r.height / 2) * r.width + Math.floor(r.width / 2)];
 * console.log(r.score, r.isAnomaly, centre);
 */
export interface ScoreResult {
  /** Raw image score: a patch distance (larger = more anomalous). */
  score: number;
  /** Score mapped to [0, 1] with 0.5 at the calibrated threshold; null when the fit had too few images to calibrate. */
  normalizedScore: number | null;
  /** normalizedScore >= 0.5; null without calibration. */
  isAnomaly: boolean | null;
  /** Anomaly map (patch distances, upsampled and blurred), row-major, `height` x `width`. */
  map: Float32Array;
  /** The input image's width in pixels. */
  width: number;
  /** The input image's height in pixels. */
  height: number;
  /** PNG overlay (jet colour map, 50% blend, threshold contour) when asked with `{ heatmap: 'png' }`. */
  heatmap?: Buffer;
}

/**
 * Options of {@link Engine.score} and {@link Engine.scoreMany}.
 * @example
 * const { heatmap } = await engine.score('frame.png', { heatmap: 'png' });
 * if (heatmap) await import('node:fs/promises').then((fs) => fs.writeFile('frame.heat.png', heatmap));
 */
export interface ScoreOptions {
  /** `'png'`: also return a coloured overlay PNG of the map over the image. */
  heatmap?: 'png' | false;
}

/** Throws ERR_INVALID_OPTION for bad score options (before any work is queued). */
export function checkScoreOptions(options: ScoreOptions): void {
  if (options === null || typeof options !== 'object') throw new ReconpatchError('ERR_INVALID_OPTION', 'score options must be an object');
  const { heatmap } = options;
  if (heatmap !== undefined && heatmap !== false && heatmap !== 'png')
    throw new ReconpatchError('ERR_INVALID_OPTION', `heatmap must be 'png' or false, got ${JSON.stringify(heatmap)}`);
}

/** A raw score and map -> the public result, with `calibration` (or none) and the optional heatmap. */
export async function finishResult(
  raw: { score: number; map: Float32Array; width: number; height: number },
  frame: RawFrame,
  calibration: Calibration | null,
  { heatmap }: ScoreOptions,
): Promise<ScoreResult> {
  const normalizedScore = calibration ? normalize(raw.score, calibration) : null;
  const result: ScoreResult = { score: raw.score, normalizedScore, isAnomaly: normalizedScore === null ? null : normalizedScore >= 0.5, map: raw.map, width: raw.width, height: raw.height };
  if (heatmap === 'png') {
    const scaled = new Float32Array(raw.map.length);
    if (calibration) for (let i = 0; i < scaled.length; i++) scaled[i] = normalize(raw.map[i], calibration);
    else {
      // Uncalibrated: the map's own range.
      let lo = Infinity;
      let hi = -Infinity;
      for (const v of raw.map) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
      for (let i = 0; i < scaled.length; i++) scaled[i] = hi > lo ? (raw.map[i] - lo) / (hi - lo) : 0;
    }
    result.heatmap = await heatmapPng(frame, scaled);
  }
  return result;
}
