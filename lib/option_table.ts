/**
 * The one declaration of the options the native engine runs with: every key, its kind, default
 * and allowed values. `options.ts` fills them from the public {@link EngineOptions}; a loaded model
 * file's options are checked against it before any engine is built from them; and the addon's own
 * list (`visitOptions` and the struct defaults in native/core/options.h) is compared with it when
 * the addon loads, so the two sides cannot drift apart unnoticed.
 */
import type { NativeOptions } from './native.js';

type Spec =
  | { kind: 'string'; default: string }
  | { kind: 'enum'; default: string; values: readonly string[] }
  | { kind: 'bool'; default: boolean }
  /** An integer in [min, max]; `off`: 0 is also allowed and means "none" (no resize, no crop, all cores). */
  | { kind: 'int'; default: number; min: number; max: number; off?: true }
  /** A number in [min, max], or (min, max] with `openMin`. */
  | { kind: 'number'; default: number; min: number; max: number; openMin?: true };

// The maxima bound the work one option can ask for, since a model file is input too: a D x p
// coreset projection (8192 x 4096 floats = 128 MiB), a coreset start matrix of 32768 x starts
// floats, a head batch's N x N similarities (8192^2 floats = 256 MiB). The batch's pixels are
// bounded across options (nativeOptionProblems); threads above the machine's cores are clamped
// natively (core/engine.cc, applyThreads).

/** Options of the native engine, in the addon's order. */
export const OPTION_TABLE = {
  backbone: { kind: 'string', default: 'random_cnn' },
  weights: { kind: 'string', default: '' },
  layers: { kind: 'string', default: '' },
  resize: { kind: 'int', default: 256, min: 16, max: 8192, off: true },
  crop: { kind: 'int', default: 0, min: 16, max: 8192, off: true },
  resizeMode: { kind: 'enum', default: 'area', values: ['area', 'shorter', 'squash'] },
  upscale: { kind: 'bool', default: true },
  tileSize: { kind: 'int', default: 0, min: 64, max: 8192, off: true },
  tileOverlap: { kind: 'int', default: 128, min: 0, max: 4096 },
  patchSize: { kind: 'int', default: 3, min: 1, max: 15 },
  pretrainDim: { kind: 'int', default: 1024, min: 1, max: 8192 },
  targetDim: { kind: 'int', default: 1024, min: 1, max: 8192 },
  coresetRatio: { kind: 'number', default: 0.1, min: 0, max: 1, openMin: true },
  coresetProjection: { kind: 'int', default: 128, min: 1, max: 4096 },
  coresetStarts: { kind: 'int', default: 10, min: 1, max: 1000 },
  fitPrecision: { kind: 'enum', default: 'float32', values: ['float32', 'float16'] },
  distance: { kind: 'enum', default: 'euclidean', values: ['euclidean', 'squared'] },
  reweight: { kind: 'bool', default: false },
  reweightNeighbors: { kind: 'int', default: 9, min: 1, max: 1024 },
  blurSigma: { kind: 'number', default: 4, min: 0, max: 64 },
  head: { kind: 'bool', default: false },
  headIterations: { kind: 'int', default: 1000, min: 0, max: 1_000_000 },
  headBatch: { kind: 'int', default: 1024, min: 2, max: 8192 },
  headProjectionDim: { kind: 'int', default: 0, min: 0, max: 8192 },
  headLr: { kind: 'number', default: 1e-3, min: 0, max: 10 },
  headWeightDecay: { kind: 'number', default: 1e-2, min: 0, max: 10 },
  headEma: { kind: 'number', default: 0.9, min: 0, max: 1 },
  headK: { kind: 'int', default: 5, min: 1, max: 1024 },
  headSigma: { kind: 'number', default: 1, min: 0, max: 1e6, openMin: true },
  headSigmaRule: { kind: 'enum', default: 'knn', values: ['fixed', 'knn'] },
  headAlpha: { kind: 'number', default: 0.5, min: 0, max: 1 },
  headMargin: { kind: 'number', default: 1, min: 0, max: 1e6, openMin: true },
  headNormalize: { kind: 'bool', default: false },
  headInitIdentity: { kind: 'bool', default: true },
  headPlateau: { kind: 'number', default: 0.01, min: 0, max: 0.99 },
  device: { kind: 'enum', default: 'auto', values: ['cpu', 'cuda', 'auto'] },
  threads: { kind: 'int', default: 0, min: 1, max: 1024, off: true },
  seed: { kind: 'int', default: 0, min: 0, max: 2 ** 32 - 1 },
  batchSize: { kind: 'int', default: 4, min: 1, max: 1024 },
} as const satisfies Record<keyof NativeOptions, Spec>;

export type OptionKey = keyof typeof OPTION_TABLE;

/** The default of one option. */
export function optionDefault<K extends OptionKey>(key: K): (typeof OPTION_TABLE)[K]['default'] {
  return OPTION_TABLE[key].default;
}

/** Why `value` is not allowed for `key` (a sentence fragment), or null when it is. */
export function optionProblem(key: OptionKey, value: unknown): string | null {
  const spec: Spec = OPTION_TABLE[key];
  switch (spec.kind) {
    case 'string':
      return typeof value === 'string' ? null : 'must be a string';
    case 'bool':
      return typeof value === 'boolean' ? null : 'must be a boolean';
    case 'enum':
      return spec.values.includes(value as string) ? null : `must be one of ${spec.values.map((v) => `'${v}'`).join(', ')}`;
    case 'int':
      if (spec.off && value === 0) return null;
      return typeof value === 'number' && Number.isInteger(value) && value >= spec.min && value <= spec.max
        ? null
        : `must be an integer in [${spec.min}, ${spec.max}]${spec.off ? ' (or 0: none)' : ''}`;
    case 'number': {
      const ok = typeof value === 'number' && Number.isFinite(value) && value <= spec.max && (spec.openMin ? value > spec.min : value >= spec.min);
      return ok ? null : `must be a number in ${spec.openMin ? '(' : '['}${spec.min}, ${spec.max}]`;
    }
  }
}

/**
 * Pixels one native batch may hold after resizing (2^26: 1 GiB of float32 input for 4 images of
 * 8192^2 or 1024 of 256^2): `batchSize` x (resize^2, or the largest resized image
 * {@link WORKING_PIXELS_DEFAULT} when images keep their size).
 */
export const BATCH_PIXELS = 2 ** 26;

/** The default largest image after resizing, in pixels (2048^2); `input.maxResizedPixels` in images.ts. */
export const WORKING_PIXELS_DEFAULT = 2048 * 2048;

/**
 * Why `batchSize` images of this resize are too many for one native batch, or null.
 * @example
 * batchPixelsProblem(4, 256); // null
 * batchPixelsProblem(1024, 8192); // '... pixels per batch, over 67108864; use batchSize <= 1'
 */
export function batchPixelsProblem(batchSize: number, resize: number): string | null {
  const side = resize > 0 ? resize : 2048;
  const pixels = batchSize * side * side;
  return pixels <= BATCH_PIXELS
    ? null
    : `batchSize ${batchSize} x ${resize > 0 ? `resize ${resize}` : 'unresized images of up to 2048'}^2 = ${pixels} pixels per batch, over ${BATCH_PIXELS}; ` +
        `use batchSize <= ${Math.max(1, Math.floor(BATCH_PIXELS / (side * side)))}`;
}

/** Tiles' size must be a multiple of this (every backbone's coarsest stride divides it). */
export const TILE_ALIGN = 32;

/**
 * Why these tiles (native `tileSize`, 0 = none, and `tileOverlap`) cannot be used, or null.
 * @example
 * tilesProblem(256, 64); // null
 * tilesProblem(250, 64); // 'tiles.size (250) must be a multiple of 32'
 */
export function tilesProblem(tileSize: number, tileOverlap: number): string | null {
  if (tileSize === 0) return null;
  if (tileSize % TILE_ALIGN !== 0) return `tiles.size (${tileSize}) must be a multiple of ${TILE_ALIGN}`;
  if (tileOverlap >= tileSize) return `tiles.overlap (${tileOverlap}) must be smaller than tiles.size (${tileSize})`;
  return null;
}

/**
 * Every problem of a complete native options object: keys missing or unknown, values out of
 * range, and the constraints across keys (a crop no larger than the resize; a batch's pixels
 * within {@link BATCH_PIXELS}). Empty when valid.
 */
export function nativeOptionProblems(o: Record<string, unknown>): string[] {
  const problems: string[] = [];
  for (const key of Object.keys(OPTION_TABLE) as OptionKey[]) {
    if (!(key in o)) problems.push(`${key} is missing`);
    else {
      const p = optionProblem(key, o[key]);
      if (p) problems.push(`${key}=${JSON.stringify(o[key])} ${p}`);
    }
  }
  for (const key of Object.keys(o)) if (!(key in OPTION_TABLE)) problems.push(`${key} is not an option`);
  const { resize, crop } = o as { resize?: number; crop?: number };
  if (typeof resize === 'number' && typeof crop === 'number' && resize > 0 && crop > resize) problems.push(`crop (${crop}) exceeds resize (${resize})`);
  const { tileSize, tileOverlap } = o as { tileSize?: number; tileOverlap?: number };
  const tileProblem = typeof tileSize === 'number' && typeof tileOverlap === 'number' ? tilesProblem(tileSize, tileOverlap) : null;
  if (tileProblem) problems.push(tileProblem);
  const { batchSize } = o as { batchSize?: number };
  if (typeof resize === 'number' && typeof batchSize === 'number' && problems.length === 0) {
    const p = batchPixelsProblem(batchSize, resize);
    if (p) problems.push(p);
  }
  return problems;
}

/**
 * Where the addon's option list (its keys, in order, and the defaults of its C++ struct) differs
 * from this table. Empty when they agree.
 */
export function optionTableDrift(nativeDefaults: Record<string, unknown>): string[] {
  const ours = Object.keys(OPTION_TABLE);
  const theirs = Object.keys(nativeDefaults);
  const drift: string[] = [];
  if (ours.join(',') !== theirs.join(',')) drift.push(`keys differ: the addon has [${theirs.join(', ')}], lib/option_table.ts [${ours.join(', ')}]`);
  for (const key of ours) {
    if (!(key in nativeDefaults)) continue;
    const mine = OPTION_TABLE[key as OptionKey].default;
    if (nativeDefaults[key] !== mine) drift.push(`default of ${key}: the addon ${JSON.stringify(nativeDefaults[key])}, lib/option_table.ts ${JSON.stringify(mine)}`);
  }
  return drift;
}
