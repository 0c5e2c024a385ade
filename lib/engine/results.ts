/**
 * Post-processing of one raw result (a score and a map, from one engine or fused from an
 * ensemble's members): the calibrated score, the verdict and, when asked, the heatmap PNG.
 */
import path from 'node:path';

import { type Calibration, normalize } from '../calibration.js';
import { ReconpatchError } from '../errors.js';
import { heatmapPng } from '../heatmap.js';
import type { RawFrame } from '../native.js';
import type { ModelRef } from './model_info.js';

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
  /**
   * The score on a calibrated scale: 0.5 at the threshold, 0 at a typical nominal patch distance,
   * rising without bound above the threshold (a worse defect reads higher). Null without calibration.
   */
  normalizedScore: number | null;
  /** score >= the threshold (normalizedScore >= 0.5); null without calibration. */
  isAnomaly: boolean | null;
  /**
   * Anomaly map (patch distances, upsampled and blurred), row-major, `height` x `width`. NaN where
   * the image was not inspected (outside a crop, when one was asked for).
   */
  map: Float32Array;
  /** The input image's width in pixels. */
  width: number;
  /** The input image's height in pixels. */
  height: number;
  /** The id of the model that scored it (`info.model.id`; null for a model file written before models had ids). */
  modelId: string | null;
  /** The version of the model (with its thresholds) that scored it (`info.model.version`). */
  modelVersion: string;
  /** PNG heatmap (lib/heatmap.ts: tint above the floor, contours, verdict banner and frame) when asked with `{ heatmap: 'png' }`. */
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
  /** The image's name, written in the heatmap's banner (default: the file name when the image is given as a path; up to 200 characters). */
  label?: string;
}

/** Throws ERR_INVALID_OPTION for bad score options (before any work is queued). */
export function checkScoreOptions(options: ScoreOptions): void {
  if (options === null || typeof options !== 'object') throw new ReconpatchError('ERR_INVALID_OPTION', 'score options must be an object');
  const { heatmap, label } = options;
  if (heatmap !== undefined && heatmap !== false && heatmap !== 'png')
    throw new ReconpatchError('ERR_INVALID_OPTION', `heatmap must be 'png' or false, got ${JSON.stringify(heatmap)}`);
  if (label !== undefined && (typeof label !== 'string' || label.length > 200))
    throw new ReconpatchError('ERR_INVALID_OPTION', `label must be a string of up to 200 characters, got ${JSON.stringify(label)?.slice(0, 60)}`);
}

/** The options of one image's score: `label` defaults to the file name of an image given as a path. */
export function withLabel(options: ScoreOptions, image: unknown): ScoreOptions {
  return options.label === undefined && typeof image === 'string' ? { ...options, label: path.basename(image) } : options;
}

/** A raw score and map -> the public result, with `calibration` (or none), the model that scored it, and the optional heatmap. */
export async function finishResult(
  raw: { score: number; map: Float32Array; width: number; height: number },
  frame: RawFrame,
  calibration: Calibration | null,
  model: ModelRef,
  { heatmap, label }: ScoreOptions,
): Promise<ScoreResult> {
  const normalizedScore = calibration ? normalize(raw.score, calibration) : null;
  const isAnomaly = calibration ? raw.score >= calibration.threshold : null;
  const result: ScoreResult = {
    score: raw.score, normalizedScore, isAnomaly, map: raw.map, width: raw.width, height: raw.height, modelId: model.id, modelVersion: model.version,
  };
  if (heatmap === 'png') result.heatmap = await heatmapPng(frame, raw.map, calibration, { score: raw.score, normalizedScore, isAnomaly, model, ...(label ? { source: label } : {}) });
  return result;
}
