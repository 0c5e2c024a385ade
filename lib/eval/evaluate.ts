/**
 * The evaluation protocol on an MVTec-layout dataset: fit on train/good (every image in the bank,
 * as in the papers; the threshold is calibrated leave-one-image-out on the same images, which
 * leaves the bank unchanged), score the test set, and report image AUROC, F1, pixel AUROC and PRO
 * (maps and masks subsampled to at most {@link PIXEL_EVAL_SIDE} px; pixels not inspected rank
 * lowest), the decision at the deployed threshold (precision, recall, false-alarm rate), fit and
 * score time, peak RSS. `reconpatch eval` prints what these return; importable as `reconpatch/eval`.
 */
import { writeFileSync } from 'node:fs';

import { Engine, type ScoreResult } from '../engine/engine.js';
import type { Progress } from '../engine/staged_fit.js';
import { Ensemble, type EnsembleProgress, type MemberOutputs, fuseTestMinMax } from '../ensemble/ensemble.js';
import type { EngineOptions } from '../options.js';
import type { Calibration } from '../calibration.js';
import { readMask, readMvtecDataset } from './dataset.js';
import { saveGrid } from './grids.js';
import { auroc, decisionMetrics, f1Max, pixelAuroc, pro } from './metrics.js';

/** Where {@link evaluate} reports what it is doing (default: stderr). */
export interface EvaluateOptions {
  /** Use only the first n training images. */
  trainLimit?: number;
  /** Write `path,label,score` per test image to this CSV file. */
  scoresOut?: string;
  /** Fit progress (a member index for ensembles). */
  onProgress?: (p: EnsembleProgress) => void;
  /** One-line status messages ("fitting on 64 images"). */
  log?: (line: string) => void;
  /** Scoring progress: test images scored so far, of `total`. */
  onScored?: (done: number, total: number) => void;
  /** Write an image | heatmap | ground truth picture per test image below this folder (`<defect>/<name>.png`). */
  saveImages?: string;
}

/** Every s-th pixel in both directions, s chosen so the longer side is at most `maxSide`. */
function subsample(values: ArrayLike<number>, width: number, height: number, maxSide: number) {
  const s = Math.max(1, Math.ceil(Math.max(width, height) / maxSide));
  const w = Math.ceil(width / s);
  const h = Math.ceil(height / s);
  const out = new Float32Array(w * h);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) out[y * w + x] = values[y * s * width + x * s];
  return { data: out, width: w, height: h };
}

// Pixel metrics are computed on maps and masks subsampled to at most this side (the network's
// input is 224-256 px, so finer maps carry no more information, only cost).
export const PIXEL_EVAL_SIDE = 256;

type TestItem = Awaited<ReturnType<typeof readMvtecDataset>>['test'][number];

/** Test images that enter the pixel metrics, with their masks subsampled like the maps. */
interface PixelTarget {
  index: number;
  mask: Uint8Array;
  width: number;
  height: number;
}

async function pixelTargets(test: TestItem[], sizes: { width: number; height: number }[]): Promise<PixelTarget[]> {
  const targets: PixelTarget[] = [];
  for (const [index, t] of test.entries()) {
    if (t.label === 1 && !t.maskPath) continue; // no mask: image metrics only
    const { width, height } = sizes[index];
    const mask = t.maskPath ? await readMask(t.maskPath, width, height) : new Uint8Array(width * height);
    const m = subsample(mask, width, height, PIXEL_EVAL_SIDE);
    targets.push({ index, mask: Uint8Array.from(m.data), width: m.width, height: m.height });
  }
  return targets;
}

/** Image and pixel metrics of one scorer; `maps[k]` is the subsampled map of `targets[k]`. */
function quality(test: TestItem[], scores: number[], maps: Float32Array[], targets: PixelTarget[]) {
  const labels = test.map((t) => t.label);
  const masks = targets.map((t) => t.mask);
  const hasDefectPixels = masks.some((m) => m.some((x) => x > 0));
  return {
    image_auroc: auroc(scores, labels),
    image_f1_max: f1Max(scores, labels).f1,
    pixel_auroc: hasDefectPixels ? pixelAuroc(maps, masks) : null,
    pro: hasDefectPixels ? pro(maps, masks, targets.map((t) => t.width), targets.map((t) => t.height)) : null,
  };
}

async function readEvalData(root: string, category: string, trainLimit?: number) {
  const data = await readMvtecDataset(root, category);
  if (trainLimit) data.train = data.train.slice(0, trainLimit);
  return data;
}

/** The decision at the deployed threshold, and where that threshold came from. */
function decision(test: TestItem[], scores: number[], calibration: Calibration | null) {
  if (!calibration) return { decision: null };
  const m = decisionMetrics(scores, test.map((t) => t.label), calibration.threshold);
  return {
    decision: {
      ...m, method: calibration.method, calibration_images: calibration.images, false_alarm_target: calibration.falseAlarmRate,
      pixel_threshold: calibration.pixelThreshold, warnings: calibration.warnings,
    },
  };
}

function writeScores(file: string | undefined, test: TestItem[], scores: number[]) {
  if (!file) return;
  const csv = test.map((t, i) => `${JSON.stringify(t.path)},${t.label},${scores[i]}`).join('\n');
  writeFileSync(file, `path,label,score\n${csv}\n`);
}

const stderrLine = (line: string) => process.stderr.write(`${line}\n`);

/**
 * One engine on one category (see the module comment). Returns the metrics row `reconpatch eval
 * --json` prints.
 * @example
 * const row = await evaluate('../shared/datasets', 'metal_plate', { backbone: 'random_cnn' }, { trainLimit: 20 });
 * console.log(row.image_auroc, row.pixel_auroc);
 */
export async function evaluate(
  root: string, category: string, options: EngineOptions, { trainLimit, scoresOut, onProgress, log = stderrLine, onScored, saveImages }: EvaluateOptions = {},
) {
  const data = await readEvalData(root, category, trainLimit);
  // Every training image goes into the bank, as in the papers' protocol: the default calibration
  // (leave-one-image-out) holds none out.
  const engine = await Engine.create(options);
  log(`fitting on ${data.train.length} images of ${category}`);
  const fit = await engine.fit(data.train, { onProgress: onProgress && ((p: Progress) => onProgress(p)) });
  for (const w of fit.warnings) log(`warning: ${w}`);
  log(`scoring ${data.test.length} test images`);
  const measured = await measureEngine(engine, data.test, { scoresOut, log, onScored, saveImages });
  return {
    category,
    backbone: engine.info.backbone,
    head: engine.options.head,
    coreset: engine.options.coresetRatio,
    n_train: data.train.length,
    n_test: data.test.length,
    ...measured.quality,
    ...measured.decision,
    seed: engine.options.seed,
    missing_masks: data.missingMasks,
    fit_seconds: fit.seconds,
    score_ms_per_image: measured.scoreMsPerImage,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}

/**
 * Scores a test set with a fitted engine and measures it: image AUROC, F1, pixel AUROC, PRO,
 * precision / recall / false-alarm rate at the deployed threshold, and the scoring time per image.
 * For protocols beyond `evaluate` (e.g. fit, then update, then measure).
 * @example
 * const data = await readMvtecDataset('datasets', 'metal_plate');
 * const { quality, decision } = await measureEngine(engine, data.test);
 */
export async function measureEngine(
  engine: Engine, test: TestItem[], { scoresOut, log = stderrLine, onScored, saveImages }: Pick<EvaluateOptions, 'scoresOut' | 'log' | 'onScored' | 'saveImages'> = {},
) {
  const started = performance.now();
  const results: ScoreResult[] = [];
  const CHUNK = 8;
  for (let i = 0; i < test.length; i += CHUNK) {
    results.push(...(await engine.scoreMany(test.slice(i, i + CHUNK).map((t) => t.path))));
    if (onScored) onScored(results.length, test.length);
    else log(`scored ${results.length}/${test.length} test images`);
  }
  const scoreMsPerImage = (performance.now() - started) / test.length;
  const calibration = engine.info.calibration;
  if (saveImages) {
    for (const [i, t] of test.entries()) await saveGrid(saveImages, t, results[i].map, calibration, results[i]);
    log(`wrote ${test.length} image | heatmap | ground-truth pictures below ${saveImages}`);
  }
  writeScores(scoresOut, test, results.map((r) => r.score));
  const targets = await pixelTargets(test, results);
  const maps = targets.map((t) => subsample(results[t.index].map, results[t.index].width, results[t.index].height, PIXEL_EVAL_SIDE).data);
  const scores = results.map((r) => r.score);
  return { quality: quality(test, scores, maps, targets), decision: decision(test, scores, calibration), scoreMsPerImage };
}

/**
 * Ensemble evaluation. `fusion: 'test-minmax'` (with --protocol patchcore): every training image in
 * every bank, members normalised by their min / max over the test set (paper-comparable).
 * `'nominal-minmax'`: the deployment path, the normalisers and the threshold from the training
 * images scored leave-one-image-out (no test data). Reports the fused metrics and each member's
 * own metrics from the same fit.
 */
export async function evaluateEnsemble(
  root: string, category: string, members: EngineOptions[], fusion: 'test-minmax' | 'nominal-minmax',
  { trainLimit, scoresOut, onProgress, log = stderrLine, onScored }: EvaluateOptions = {},
) {
  const data = await readEvalData(root, category, trainLimit);
  const ensemble = await Ensemble.create({ members, ...(fusion === 'test-minmax' ? { calibration: false } : {}) });
  log(`fitting ${members.length} members on ${data.train.length} images of ${category}`);
  const fit = await ensemble.fit(data.train, { onProgress });
  const k = ensemble.size;
  const started = performance.now();
  // Kept per test image: raw member scores, and subsampled member maps for the pixel metrics; the
  // full maps' min / max per member are tracked so that subsampling does not change the ranges.
  const outputs: MemberOutputs[] = [];
  const sizes: { width: number; height: number }[] = [];
  const mapRanges = Array.from({ length: k }, () => ({ min: Infinity, max: -Infinity }));
  const fusedHoldout: { score: number; map: Float32Array }[] = [];
  const CHUNK = 16;
  for (let i = 0; i < data.test.length; i += CHUNK) {
    for (const o of await ensemble.scoreMembers(data.test.slice(i, i + CHUNK).map((t) => t.path))) {
      if (fusion === 'nominal-minmax') {
        const f = ensemble.fuse(o);
        fusedHoldout.push({ score: f.score, map: subsample(f.map, o.width, o.height, PIXEL_EVAL_SIDE).data });
      }
      for (const [m, map] of o.maps.entries()) {
        for (const v of map) { if (v < mapRanges[m].min) mapRanges[m].min = v; if (v > mapRanges[m].max) mapRanges[m].max = v; }
      }
      outputs.push({ ...o, maps: o.maps.map((map) => subsample(map, o.width, o.height, PIXEL_EVAL_SIDE).data) });
      sizes.push({ width: o.width, height: o.height });
    }
    onScored?.(outputs.length, data.test.length);
  }
  const scoreMs = (performance.now() - started) / data.test.length;
  const targets = await pixelTargets(data.test, sizes);
  const perMember = Array.from({ length: k }, (_, m) => ({
    scores: outputs.map((o) => o.scores[m]),
    maps: targets.map((t) => outputs[t.index].maps[m]),
  }));
  const fused =
    fusion === 'test-minmax'
      ? fuseTestMinMax(perMember, mapRanges)
      : { scores: fusedHoldout.map((f) => f.score), maps: targets.map((t) => fusedHoldout[t.index].map) };
  writeScores(scoresOut, data.test, fused.scores);
  const { members: infos } = ensemble.info;
  return {
    category,
    backbone: infos.map((m) => m.backbone).join('+'),
    ensemble: true,
    fusion,
    head: infos[0].options.head,
    coreset: infos[0].options.coresetRatio,
    n_train: data.train.length,
    n_fit: fit.images,
    n_test: data.test.length,
    ...quality(data.test, fused.scores, fused.maps, targets),
    ...decision(data.test, fused.scores, fusion === 'nominal-minmax' ? ensemble.info.calibration : null),
    members: infos.map((info, m) => ({ backbone: info.backbone, ...quality(data.test, perMember[m].scores, perMember[m].maps, targets) })),
    seed: infos[0].options.seed,
    missing_masks: data.missingMasks,
    fit_seconds: fit.seconds,
    score_ms_per_image: scoreMs,
    peak_rss_mb: Math.round(process.resourceUsage().maxRSS / 1024),
  };
}
