/**
 * Engine options: the public shape, defaults, and validation. JS validates; the addon receives a
 * complete plain object ({@link NativeOptions}) and trusts it.
 *
 * A little over ~400 lines: the public option types with their documentation (the API reference)
 * and their validation stay together, one concept per block.
 */
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';

import { DEFAULT_FALSE_ALARM_RATE } from './calibration.js';
import { ReconpatchError } from './errors.js';
import type { NativeOptions } from './native.js';
import type { InputOptions } from './io/images.js';
import { type OptionKey, batchPixelsProblem, optionDefault, optionProblem, tilesProblem } from './option_table.js';
import { TORCHVISION_ARCHITECTURES, cachedWeights, isTorchvisionArchitecture, pullCommand, tapNames } from './io/weights.js';

/**
 * Built-in backbones (no weight files needed).
 * @example
 * const engine = await Engine.create({ backbone: BUILTIN_BACKBONES[0] }); // 'random_cnn'
 */
export const BUILTIN_BACKBONES = ['random_cnn'] as const;

/**
 * Options for {@link Engine.create}.
 * @example
 * const engine = await Engine.create({
 *   backbone: '/models/mobilenet_v1_imagenet.pt', resizeMode: 'squash', resize: 256, crop: 224,
 *   coreset: { ratio: 0.1 },
 * });
 */
export interface EngineOptions {
  /**
   * `'random_cnn'` (a seeded random CNN, for tests), a torchvision architecture (`'resnet18'`,
   * `'resnet50'`, `'wide_resnet50_2'`, `'wide_resnet101_2'`, `'resnext101_32x8d'`, `'densenet201'`:
   * weights from the cache, see `reconpatch weights pull`), or a TorchScript `.pt` file path.
   */
  backbone: string;
  /** Torchvision architectures: a `.pth` state-dict file to use instead of the cached official weights. */
  weights?: string;
  /**
   * Torchvision architectures: the feature taps, e.g. `['layer2', 'layer3']` (the default;
   * `['denseblock2', 'denseblock3']` for densenet201). Choose from layer1..layer4 / denseblock1..4.
   */
  layers?: string[];
  /**
   * The ReConPatch head: `true` (default) or an object trains a linear representation f on the
   * nominal patches and scores f(p) ({@link HEAD_DEFAULTS}: 256 steps, a bounded cost); `false`
   * uses PatchCore features as they are. `'auto'`
   * checks at every fit whether the head helps on your own images: a share of the good images
   * (10%, 2 to 8) is held out of the bank, 18 synthetic defects are painted on each, and the model
   * with the higher AUROC on them is kept (the head only when it gains more than 0.005). The
   * evidence is in `info.headCheck` and the model file. It costs a PatchCore fit and a head fit
   * plus the check's scoring, and twice the staged memory.
   */
  head?: boolean | 'auto' | HeadOptions;
  /** Greedy coreset: `ratio` of patches kept (default 0.1), random `projection` size (128), random `starts` (10). */
  coreset?: { ratio?: number; projection?: number; starts?: number };
  /**
   * Resize target in pixels (default 256): with `resizeMode: 'area'` the image keeps its aspect
   * ratio and is scaled to about `resize` x `resize` pixels in all; the shorter side with
   * `'shorter'`; both sides with `'squash'`. `null` keeps the size. Bank size and scoring cost grow
   * with resize²; a larger value keeps thinner defects visible (docs/results.md).
   * `'auto'`: about {@link AUTO_RESIZE}² pixels, never more than the image has (`upscale: false`):
   * the policy of docs/results.md, "Resolution and tiling".
   */
  resize?: number | null | 'auto';
  /** false: an image with fewer pixels than the resize target keeps its own size (default true; false with `resize: 'auto'`). */
  upscale?: boolean;
  /**
   * Embed the resized image in overlapping tiles of `size` pixels (a multiple of 32), `overlap`
   * pixels shared between neighbours (default 128), and stitch their features into one grid that
   * one memory bank scores (default none: the whole image at once). Features near a seam still see
   * the tile's border within the backbone's receptive field, so use tiles large against it (256 and
   * up for mobilenet_v1; docs/results.md). What tiles bound is the backbone's memory on very large
   * working images (e.g. `resize: null` on camera frames), at the cost of the overlap's extra work.
   */
  tiles?: { size: number; overlap?: number } | null;
  /**
   * Center crop in pixels after resizing (default none: every pixel is inspected). Pixels outside
   * the crop are not inspected: NaN in maps, hatched grey in heatmaps.
   */
  crop?: number | null;
  /** `'area'` (default): aspect ratio kept, area about resize²; `'shorter'`: shorter side = resize; `'squash'`: resize x resize. */
  resizeMode?: 'area' | 'shorter' | 'squash';
  /** Patch-feature sizes: per-layer pooled size (default 1024) and final size (default 1024). */
  features?: { pretrainDim?: number; targetDim?: number };
  /** Scoring: `distance` (`'euclidean'` default, or `'squared'` as faiss), `reweight` (PatchCore Eq. 7, default false) with `neighbors` (9), map `blurSigma` (4). */
  scoring?: { distance?: 'euclidean' | 'squared'; reweight?: boolean; neighbors?: number; blurSigma?: number };
  /**
   * Precision of the patch features held in memory during fit (default `'float32'`). `'float16'`
   * halves the staged features, the largest part of fit memory on big training sets; the head and
   * the bank still compute in float32. Memory and AUROC measured: bench/NOTES.md, docs/results.md.
   */
  fitPrecision?: 'float32' | 'float16';
  /** Images embedded per native call during fit and batch scoring (default 4). */
  batchSize?: number;
  /**
   * libtorch intra-op threads (default: all cores of the machine the engine runs on, also after
   * `load`). More than the machine's cores are clamped to its cores: libtorch's thread pool is
   * process-wide, so every engine in the process would pay for them.
   */
  threads?: number;
  /** `'cpu'`, `'cuda'`, or `'auto'` (CUDA when this build and machine have it; default). */
  device?: 'cpu' | 'cuda' | 'auto';
  /** Seed for every random choice (random CNN weights, coreset projection and starts). Default 0. */
  seed?: number;
  /**
   * Calibration (lib/calibration.ts): after the bank is built, up to `maxImages` fit images (default
   * 100, spread evenly) are scored against it without their own patches (leave-one-image-out), and
   * the thresholds are set so that about `falseAlarmRate` of good parts are flagged (default 0.01),
   * so that results carry `normalizedScore` (0.5 = threshold) and `isAnomaly`. `holdout` > 0
   * instead keeps that share of the images (at least `minImages`) out of the bank to calibrate on.
   * `false` disables it.
   */
  calibration?: { falseAlarmRate?: number; maxImages?: number; holdout?: number; minImages?: number } | false;
  /**
   * Batching of concurrent `score()` calls (see {@link BatchingOptions}); `false` scores every
   * call on its own. Runtime only: not saved with the model; pass it again to `Engine.load`.
   */
  batching?: BatchingOptions | false;
  /**
   * What inputs are accepted (see {@link InputOptions}): the pixel budget (`maxPixels`, default
   * 8192 × 8192, checked from the header before decoding, and on the resized image) and the
   * policy for damaged images (`failOn`, default `'warning'`). Runtime only: not saved with the
   * model; pass it again to `Engine.load`.
   */
  input?: InputOptions;
}

/**
 * How concurrent `score()` calls are gathered. Calls that arrive while the engine is busy wait
 * together and run as one native call of up to `maxBatch` images (default 8). `maxWaitMs`
 * (default 0) also holds a batch that could start at once for up to that long to let more calls
 * join: more throughput where batches are cheaper per image (GPU), more latency everywhere.
 * Each caller gets exactly the result a call on its own would give.
 * @example
 * const engine = await Engine.create({ backbone: 'model.pt', batching: { maxBatch: 16, maxWaitMs: 2 } });
 */
export interface BatchingOptions {
  /** Most images in one native batch (default 8). */
  maxBatch?: number;
  /** How long an idle engine holds a batch open for more calls (default 0: starts at once). */
  maxWaitMs?: number;
}

/** Validates the batching options (they stay in JS: scheduling). */
export function resolveBatching(value: EngineOptions['batching']): Required<BatchingOptions> {
  if (value === false) return { maxBatch: 1, maxWaitMs: 0 };
  const b = plainObject(value, 'batching');
  for (const key of Object.keys(b)) if (key !== 'maxBatch' && key !== 'maxWaitMs') fail(`unknown batching option '${key}'`);
  return {
    maxBatch: int(b.maxBatch ?? 8, 'batching.maxBatch', 1, 1024),
    maxWaitMs: num(b.maxWaitMs ?? 0, 'batching.maxWaitMs', 0, 10000),
  };
}

/** Calibration options as resolved (see {@link EngineOptions.calibration}); saved with the model. */
export interface CalibrationOptions {
  /** false: no calibration (no threshold; every image goes into the bank). */
  enabled: boolean;
  /** Target false-alarm rate of the nominal threshold rule (default 0.01). */
  falseAlarmRate: number;
  /** Most fit images scored leave-one-image-out (default 100). */
  maxImages: number;
  /** > 0: hold this share of the fit images out of the bank and calibrate on them instead (default 0). */
  holdout: number;
  /** With `holdout`: at least this many images held out (default 3). */
  minImages: number;
}

const CALIBRATION_KEYS = ['falseAlarmRate', 'maxImages', 'holdout', 'minImages'];

/** Validates the calibration options (they stay in JS: post-processing). */
export function resolveCalibration(value: EngineOptions['calibration']): CalibrationOptions {
  if (value === false) return { enabled: false, falseAlarmRate: DEFAULT_FALSE_ALARM_RATE, maxImages: 0, holdout: 0, minImages: 0 };
  const c = plainObject(value, 'calibration');
  for (const key of Object.keys(c)) if (!CALIBRATION_KEYS.includes(key)) fail(`unknown calibration option '${key}' (known: ${CALIBRATION_KEYS.join(', ')})`);
  const falseAlarmRate = num(c.falseAlarmRate ?? DEFAULT_FALSE_ALARM_RATE, 'calibration.falseAlarmRate', 0, 0.5);
  if (falseAlarmRate <= 0) fail(`calibration.falseAlarmRate must be a number in (0, 0.5], got ${JSON.stringify(c.falseAlarmRate)}`);
  return {
    enabled: true,
    falseAlarmRate,
    maxImages: int(c.maxImages ?? 100, 'calibration.maxImages', 2, 1_000_000),
    holdout: num(c.holdout ?? 0, 'calibration.holdout', 0, 0.5),
    minImages: int(c.minImages ?? 3, 'calibration.minImages', 1, 10000),
  };
}

/**
 * Calibration options as a model file stores them, brought to today's shape. Files from before
 * leave-one-image-out calibration stored `{ holdout, minImages }`: holdout 0 meant calibration off;
 * otherwise a refit now calibrates with today's defaults.
 */
export function storedCalibrationOptions(stored: unknown): CalibrationOptions {
  const s = (stored ?? {}) as Partial<CalibrationOptions>;
  if (typeof s.enabled === 'boolean') {
    if (!s.enabled) return resolveCalibration(false);
    try {
      return resolveCalibration({ falseAlarmRate: s.falseAlarmRate, maxImages: s.maxImages, holdout: s.holdout, minImages: s.minImages });
    } catch {
      return resolveCalibration(undefined);
    }
  }
  return s.holdout === 0 ? resolveCalibration(false) : resolveCalibration(undefined);
}

/**
 * ReConPatch head training (RECONPATCH.md §2). Defaults in {@link HEAD_DEFAULTS}.
 * @example
 * const engine = await Engine.create({ backbone: 'random_cnn', head: { iterations: 100, batch: 512, lr: 5e-4 } });
 */
export interface HeadOptions {
  /** Optimiser steps (default 256); a maximum when `plateau` > 0. */
  iterations?: number;
  /**
   * Patches sampled per step (N). On the CPU the loss and its gradient cost ~N² · D per step (the
   * contextual similarity comes from k-NN lists, N · k²); on a GPU the contextual similarity is
   * the dense form, two N³ products.
   */
  batch?: number;
  /** Output size of the projection g (0: same as the features). */
  projectionDim?: number;
  /** AdamW learning rate (cosine decay to 0 over the iterations). */
  lr?: number;
  /** AdamW weight decay. */
  weightDecay?: number;
  /** EMA factor of the partner network. */
  ema?: number;
  /** Contextual similarity neighbours. */
  k?: number;
  /**
   * Pairwise Gaussian bandwidth: exp(-d² / sigma) with `sigmaRule` 'fixed'; with 'knn', the scale
   * of the bandwidth the batch gives.
   */
  sigma?: number;
  /**
   * 'knn': the bandwidth is sigma times the batch's mean squared distance from each patch to its
   * k-th nearest other patch (so a k-th neighbour weighs ~exp(-1), whatever the features' scale).
   * 'fixed': sigma as given; on raw 1024-d features sigma = 1 makes every pair ~0, and only the
   * contextual similarity labels pairs.
   */
  sigmaRule?: 'fixed' | 'knn';
  /** Mix of pairwise (alpha) and contextual (1 - alpha) similarity in the pseudo-labels. */
  alpha?: number;
  /** Contrastive margin. */
  margin?: number;
  /** L2-normalise the partner's outputs before both similarities (the pairwise kernel and the contextual k-NN). */
  normalize?: boolean;
  /** Start f as the identity (0 iterations reproduce PatchCore exactly). */
  initIdentity?: boolean;
  /**
   * Check at every fit, on the user's own good images, whether the head helps, and keep it only
   * when it does (`head: 'auto'` is these defaults with `auto: true`): see {@link EngineOptions.head}.
   */
  auto?: boolean;
  /**
   * Adaptive budget: 0 (the default) trains `iterations` steps; above 0, `iterations` is a maximum
   * and training stops after a window of 32 steps whose mean loss is not below the previous
   * window's by this fraction (0.01: stop once a window gains less than 1%).
   */
  plateau?: number;
}

/**
 * Head defaults: the configuration head study v2 chose (docs/results.md, "Head study v2"): the
 * public ports' regime, 4 epochs of 64 steps of N = 1024 patches (a pool of 65,536 whatever the
 * training set's size, so the cost is bounded), lr 1e-4 with the cosine schedule over all steps,
 * EMA 0.97, margin 0.1, a fixed bandwidth of 1 on raw distances. A model file keeps the values it
 * was fitted with; these are what a new fit trains.
 * @example
 * const longer = await Engine.create({ backbone: 'random_cnn', head: { ...HEAD_DEFAULTS, iterations: 1024 } });
 */
export const HEAD_DEFAULTS: Required<HeadOptions> = {
  iterations: 256, batch: 1024, projectionDim: 0, lr: 1e-4, weightDecay: 1e-2, ema: 0.97, k: 5, sigma: 1, sigmaRule: 'fixed',
  alpha: 0.5, margin: 0.1, normalize: false, initIdentity: true, plateau: 0, auto: false,
};

/** Whether `head` asks for the head check at fit time (`'auto'` or `{ auto: true }`). */
export function headAuto(head: unknown): boolean {
  return head === 'auto' || (typeof head === 'object' && head !== null && (head as HeadOptions).auto === true);
}

function num(value: unknown, name: string, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < min || value > max)
    fail(`${name} must be a number in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return value;
}

/** `value` for the native option `key`, checked against the option table; `name` is what the user wrote. */
function checked<K extends OptionKey>(key: K, value: unknown, name: string): NativeOptions[K] {
  const problem = optionProblem(key, value);
  if (problem) fail(`${name} ${problem}, got ${JSON.stringify(value)}`);
  return value as NativeOptions[K];
}

function resolveHead(value: unknown) {
  if (value !== undefined && typeof value !== 'boolean' && value !== 'auto' && (value === null || typeof value !== 'object' || Array.isArray(value)))
    fail(`head must be true, false, 'auto' or an object of head options, got ${JSON.stringify(value)}`);
  // On unless turned off ('auto' trains it too: the check at fit time may then drop it).
  const on = value !== false;
  const h = { ...HEAD_DEFAULTS, ...(typeof value === 'object' && value !== null ? (value as HeadOptions) : {}) };
  for (const key of Object.keys(h)) if (!(key in HEAD_DEFAULTS)) fail(`unknown head option '${key}'`);
  if (typeof h.auto !== 'boolean') fail(`head.auto must be a boolean, got ${JSON.stringify(h.auto)}`);
  return {
    head: on,
    headIterations: checked('headIterations', h.iterations, 'head.iterations'),
    headBatch: checked('headBatch', h.batch, 'head.batch'),
    headProjectionDim: checked('headProjectionDim', h.projectionDim, 'head.projectionDim'),
    headLr: checked('headLr', h.lr, 'head.lr'),
    headWeightDecay: checked('headWeightDecay', h.weightDecay, 'head.weightDecay'),
    headEma: checked('headEma', h.ema, 'head.ema'),
    headK: checked('headK', h.k, 'head.k'),
    headSigma: checked('headSigma', h.sigma, 'head.sigma'),
    headSigmaRule: checked('headSigmaRule', h.sigmaRule, 'head.sigmaRule'),
    headAlpha: checked('headAlpha', h.alpha, 'head.alpha'),
    headMargin: checked('headMargin', h.margin, 'head.margin'),
    headNormalize: checked('headNormalize', h.normalize, 'head.normalize'),
    headInitIdentity: checked('headInitIdentity', h.initIdentity, 'head.initIdentity'),
    headPlateau: checked('headPlateau', h.plateau, 'head.plateau'),
  };
}

function fail(message: string): never {
  throw new ReconpatchError('ERR_INVALID_OPTION', message);
}

function int(value: unknown, name: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max)
    fail(`${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return value;
}

function plainObject(value: unknown, name: string): Record<string, unknown> {
  if (value === undefined) return {};
  if (value === null || typeof value !== 'object' || Array.isArray(value)) fail(`${name} must be an object`);
  return value as Record<string, unknown>;
}

const TOP_LEVEL = new Set([
  'backbone', 'weights', 'layers', 'head', 'coreset', 'resize', 'crop', 'resizeMode', 'upscale', 'tiles', 'features', 'scoring',
  'batchSize', 'threads', 'device', 'seed', 'calibration', 'batching', 'fitPrecision', 'input',
]);

/**
 * The working size of `resize: 'auto'`: about 384² pixels (2,304 patches at stride 8), never above
 * the image's own size. The rule and its measurements: docs/results.md, "Resolution and tiling".
 * @example
 * const engine = await Engine.create({ backbone: 'random_cnn', resize: 'auto' });
 * AUTO_RESIZE; // 384
 */
export const AUTO_RESIZE = 384;

/** Validates user options and fills every default. Throws ERR_INVALID_OPTION with what to change. */
export function resolveOptions(options: EngineOptions): NativeOptions {
  const o = plainObject(options, 'options');
  for (const key of Object.keys(o)) if (!TOP_LEVEL.has(key)) fail(`unknown option '${key}'`);
  const names = [...BUILTIN_BACKBONES, ...TORCHVISION_ARCHITECTURES].join(', ');
  if (typeof o.backbone !== 'string' || o.backbone === '')
    fail(`backbone must be a built-in name (${names}) or a path to a TorchScript .pt file`);
  let backbone = o.backbone;
  const torchvision = isTorchvisionArchitecture(backbone);
  if (!torchvision && !(BUILTIN_BACKBONES as readonly string[]).includes(backbone)) {
    backbone = path.resolve(backbone);
    if (!existsSync(backbone) || !statSync(backbone).isFile())
      fail(`backbone '${o.backbone}' is neither a built-in name (${names}) nor an existing TorchScript file`);
  }
  let weights = '';
  let layers = '';
  if (torchvision) {
    if (o.weights !== undefined) {
      if (typeof o.weights !== 'string' || o.weights === '') fail('weights must be a .pth file path');
      weights = path.resolve(o.weights);
      if (!existsSync(weights) || !statSync(weights).isFile()) fail(`weights file '${o.weights}' does not exist`);
    } else {
      const cached = cachedWeights(backbone as typeof TORCHVISION_ARCHITECTURES[number]);
      if (!cached)
        throw new ReconpatchError(
          'ERR_WEIGHTS_MISSING',
          `no weights for backbone '${backbone}' in the cache; download torchvision's official file once with\n  ${pullCommand(backbone)}\n` +
            `(or pass weights: '/path/to/file.pth'; the cache directory is $RECONPATCH_CACHE, else $XDG_CACHE_HOME/reconpatch, else ~/.cache/reconpatch)`,
        );
      weights = cached;
    }
    const taps = tapNames(backbone as typeof TORCHVISION_ARCHITECTURES[number]);
    const chosen = o.layers ?? taps.defaults;
    if (!Array.isArray(chosen) || chosen.length === 0 || chosen.some((l) => !taps.all.includes(l)) || new Set(chosen).size !== chosen.length)
      fail(`layers must be a non-empty list of distinct taps of ${backbone} from ${taps.all.join(', ')}, got ${JSON.stringify(o.layers)}`);
    layers = taps.all.filter((l) => chosen.includes(l)).join(','); // finest first
  } else {
    if (o.weights !== undefined) fail(`weights: backbone '${o.backbone}' takes no separate weights file (only torchvision architectures do)`);
    if (o.layers !== undefined) fail(`layers: backbone '${o.backbone}' has fixed taps (only torchvision architectures take layers)`);
  }

  const coreset = plainObject(o.coreset, 'coreset');
  const features = plainObject(o.features, 'features');
  const scoring = plainObject(o.scoring, 'scoring');
  // null turns resize / crop off (0 natively); a given size must be in range.
  const size = (key: 'resize' | 'crop', value: unknown) =>
    value === undefined ? optionDefault(key) : value === null ? 0 : value === 0 ? fail(`${key} must be a size in pixels or null, got 0`) : checked(key, value, key);
  const auto = o.resize === 'auto';
  const resize = auto ? AUTO_RESIZE : size('resize', o.resize);
  const crop = size('crop', o.crop);
  const upscale = o.upscale === undefined ? !auto : checked('upscale', o.upscale, 'upscale');
  const tiles = o.tiles === undefined || o.tiles === null ? null : plainObject(o.tiles, 'tiles');
  for (const key of Object.keys(tiles ?? {})) if (key !== 'size' && key !== 'overlap') fail(`unknown option 'tiles.${key}'`);
  const tileSize = tiles ? checked('tileSize', tiles.size, 'tiles.size') : 0;
  if (tiles && tileSize === 0) fail('tiles.size must be a size in pixels (or tiles: null for none), got 0');
  const tileOverlap = tiles?.overlap === undefined ? optionDefault('tileOverlap') : checked('tileOverlap', tiles.overlap, 'tiles.overlap');
  const tileProblem = tilesProblem(tileSize, tileOverlap);
  if (tileProblem) fail(tileProblem);
  if (resize > 0 && crop > resize) fail(`crop (${crop}) must not exceed resize (${resize})`);
  const given = <K extends OptionKey>(key: K, value: unknown, name: string) => checked(key, value === undefined ? optionDefault(key) : value, name);

  const batchSize = given('batchSize', o.batchSize, 'batchSize');
  const batchProblem = batchPixelsProblem(batchSize, resize);
  if (batchProblem) fail(batchProblem);
  return {
    backbone,
    weights,
    layers,
    resize,
    crop,
    resizeMode: given('resizeMode', o.resizeMode, 'resizeMode'),
    upscale,
    tileSize,
    tileOverlap,
    patchSize: optionDefault('patchSize'),
    pretrainDim: given('pretrainDim', features.pretrainDim, 'features.pretrainDim'),
    targetDim: given('targetDim', features.targetDim, 'features.targetDim'),
    coresetRatio: given('coresetRatio', coreset.ratio, 'coreset.ratio'),
    coresetProjection: given('coresetProjection', coreset.projection, 'coreset.projection'),
    coresetStarts: given('coresetStarts', coreset.starts, 'coreset.starts'),
    fitPrecision: given('fitPrecision', o.fitPrecision, 'fitPrecision'),
    distance: given('distance', scoring.distance, 'scoring.distance'),
    reweight: given('reweight', scoring.reweight, 'scoring.reweight'),
    reweightNeighbors: given('reweightNeighbors', scoring.neighbors, 'scoring.neighbors'),
    blurSigma: given('blurSigma', scoring.blurSigma, 'scoring.blurSigma'),
    ...resolveHead(o.head),
    device: given('device', o.device, 'device'),
    // 0 = all cores wherever the model runs: a saved model adapts to the machine that loads it.
    threads: o.threads === undefined ? 0 : o.threads === 0 ? fail('threads must be an integer in [1, 1024], got 0') : given('threads', o.threads, 'threads'),
    seed: given('seed', o.seed, 'seed'),
    batchSize,
  };
}
