/**
 * Loads the native addon that matches a libtorch on this machine (lib/libtorch.ts finds them) and
 * types its surface. When none matches, ERR_NATIVE_LOAD names what exists on both sides and the
 * command for each way out.
 *
 * Over ~400 lines because most of it is the typed surface of the addon (every native method and
 * struct, documented once here); the loading logic itself is short.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ReconpatchError } from './errors.js';
import { type AddonAbi, type Libtorch, type LibtorchSource, abiTag, describeAbi, describeLibtorch, findLibtorches, preloadLibtorch } from './libtorch/find.js';
import { defaultCacheDir, torchvisionDrift } from './io/weights.js';
import { optionTableDrift } from './option_table.js';

/** A raw frame as the addon takes it: HWC uint8, 1 or 3 channels, no padding. */
export interface RawFrame {
  data: Uint8Array;
  width: number;
  height: number;
  channels: 1 | 3;
}

/** Options as the addon's plain struct expects them (every field present). */
export interface NativeOptions {
  backbone: string;
  weights: string;
  /** Torchvision taps, comma-separated, finest first ("layer2,layer3"); '' for other backbones. */
  layers: string;
  resize: number;
  crop: number;
  resizeMode: 'area' | 'shorter' | 'squash';
  /** false: an image with fewer pixels than the resize target keeps its size. */
  upscale: boolean;
  /** Tiles of this many pixels of the resized image (0: the whole image at once), overlapping by tileOverlap. */
  tileSize: number;
  tileOverlap: number;
  patchSize: number;
  pretrainDim: number;
  targetDim: number;
  coresetRatio: number;
  coresetProjection: number;
  coresetStarts: number;
  fitPrecision: 'float32' | 'float16';
  distance: 'euclidean' | 'squared';
  reweight: boolean;
  reweightNeighbors: number;
  blurSigma: number;
  head: boolean;
  headIterations: number;
  headBatch: number;
  headProjectionDim: number;
  headLr: number;
  headWeightDecay: number;
  headEma: number;
  headK: number;
  headSigma: number;
  headSigmaRule: 'fixed' | 'knn';
  headAlpha: number;
  headMargin: number;
  headNormalize: boolean;
  headInitIdentity: boolean;
  headPlateau: number;
  device: 'cpu' | 'cuda' | 'auto';
  threads: number;
  seed: number;
  batchSize: number;
}

export interface NativeInfo {
  backboneName: string;
  /** SHA-256 of the backbone's weights (TorchScript file bytes, or the random CNN's weights). */
  backboneSha256: string;
  /** Whether the memory bank holds a fit (after fit() or load()). */
  fitted: boolean;
  /** Rows in the memory bank. */
  bankRows: number;
  /** Size of one patch feature (the bank's columns). */
  featureDim: number;
  /** Images the bank was built from (the fit's and every update's). */
  trainImages: number;
  /** Patch features extracted from them, before the coreset. */
  trainPatches: number;
  /** `update()` calls since the fit. */
  updates: number;
  /** Bank rows those updates added (the bank's growth since the fit). */
  updateRows: number;
  /** The device the engine computes on: `'cpu'` or `'cuda:0'`-style. */
  device: string;
}

export interface NativeScore {
  score: number;
  map: Float32Array;
  width: number;
  height: number;
}

/** One fit image scored against the pending bank without its own rows (leave-one-image-out). */
export interface NativeLeaveOut {
  /** The image's position among the images given to fitAdd. */
  input: number;
  score: number;
  mapMin: number;
  mapMax: number;
  mapMean: number;
}

export interface FloatArray {
  data: Float32Array;
  shape: number[];
}

/** What staged features hold: images and patches embedded (also those reduced away), rows carried, the caller's metadata. */
export interface NativeStaged {
  images: number;
  patches: number;
  rows: number;
  metadata: string;
}

export interface NativeEngine {
  info(): NativeInfo;
  options(): NativeOptions;
  /** Starts staging: a new model ('fit', optionally with a bound on the staged patches) or the live one grown ('update'). */
  fitBegin(mode?: 'fit' | 'update', maxStagedPatches?: number): void;
  fitAdd(images: RawFrame[]): Promise<void>;
  /** Ends the fit in progress by handing its staged features over as bytes (a distributed fit's shard); the live model is untouched. */
  fitTakeStaged(metadata: string): Promise<NativeStaged & { bytes: Buffer }>;
  /** Adds staged features (fitTakeStaged's bytes, from an engine with the same options) to the fit in progress. */
  fitAddStaged(bytes: Buffer, label: string): Promise<NativeStaged>;
  /**
   * Builds the new model into a pending slot; the live model keeps serving until fitCommit.
   * leaveOut > 0: also scores up to that many staged images (spread evenly) against the pending
   * bank without their own rows (stage 'calibrate'); {@link NativeEngine.leaveOut} returns them.
   * Resolves with the number of progress calls queued (they may still be arriving).
   */
  fitEnd(onProgress?: (stage: string, done: number, total: number, value: number) => void, leaveOut?: number): Promise<number>;
  /** The last fitEnd's leave-one-image-out results, in input order. */
  leaveOut(): NativeLeaveOut[];
  /** Scores against the pending model (calibration before the commit). */
  scorePending(images: RawFrame[]): Promise<NativeScore[]>;
  /** Makes the pending model live, with this metadata. */
  fitCommit(metadata: string): void;
  /** Drops the staged features and the pending model; the live model stays. */
  fitAbort(): void;
  cancel(): void;
  score(images: RawFrame[]): Promise<NativeScore[]>;
  /** The fitted model as model-file bytes. */
  encode(): Promise<Buffer>;
  embed(images: [RawFrame]): Promise<FloatArray>;
  metadata(): string;
  /** Throws ERR_INVALID_IMAGE for frames this engine could not embed (geometry checks only; synchronous, cheap). */
  validate(images: RawFrame[]): void;
  setMetadata(metadata: string): void;
  setThreads(threads: number): void;
  /** Hex SHA-256 of the fitted model's scoring sections (not META): the same for every re-save and load of one model. */
  contentHash(): Promise<string>;
  /**
   * Drops the engine now (its memory is freed unless a running call still holds it: true when this
   * was the last reference). Every later call throws ERR_DISPOSED. Idempotent.
   */
  release(): boolean;
}

/** Single pipeline steps on small arrays, synchronous. For tests and tools, not for serving. */
export interface NativeInternals {
  /** tensorOps: the tensor-operation path (used off CPU) instead of the fused CPU kernel. */
  patchFeatures(taps: FloatArray[], patchSize: number, pretrainDim: number, targetDim: number, tensorOps?: boolean): FloatArray;
  preprocess(image: RawFrame, resize: number, crop: number, mode: 'area' | 'shorter' | 'squash'): FloatArray;
  /** bfloat16: select on the points rounded to bfloat16, as fit does. deviceLoop: the loop the GPU runs, here on the CPU. */
  greedyCoreset(projected: FloatArray, starts: number[], count: number, pruned: boolean, threads?: number, bfloat16?: boolean, deviceLoop?: boolean): number[];
  coresetProject(features: FloatArray, projectionDim: number, seed: number): FloatArray;
  /** Tiles along one axis (pipeline/tiles.h): per tile origin, size, and the kept cells [from, to) of its ceil(size / cell). */
  tilePlan(length: number, tile: number, overlap: number, align: number, cell: number): number[];
  /** What the graph passes (native/core/backbones/script_passes.h) did to a TorchScript backbone, or why not. */
  backbonePasses(backbone: string): string;
  backboneMilliseconds(backbone: string, size: number, batch: number, reps: number, threads: number): { backboneMs: number; patchFeaturesMs: number };
  /**
   * Exact k-NN. kernel: 'auto' (the engine's choice), 'float32', or 'int8' (int8 + float32 re-scoring where the CPU has
   * AVX-512 VNNI); with `excludeBegin`/`excludeEnd`, over the bank without rows [excludeBegin, excludeEnd).
   */
  /** `int8Queries`: how many queries the int8 pass searched (the rest took the float32 GEMM). */
  knn(bank: FloatArray, queries: FloatArray, k: number, kernel?: 'auto' | 'float32' | 'int8', excludeBegin?: number, excludeEnd?: number): { distances: FloatArray; indices: number[]; int8Queries: number };
  /** The int8 k-NN: supported by this CPU, and on; passing a boolean turns it on or off process-wide (off: float32 GEMM). */
  knnInt8(enabled?: boolean): { supported: boolean; enabled: boolean };
  /** float32 GEMM vs int8 k-NN side by side (k = 1); null bank / queries: seeded standard-normal rows. */
  knnCompare(bank: FloatArray | null, queries: FloatArray | null, bankRows: number, queryRows: number, dim: number, reps: number, threads: number): {
    float32Ms: number; int8Ms: number; rescoredPerQuery: number; queries: number; bankRows: number;
    fallbackQueries: number; sameIndex: number; maxRelativeGap: number; int8: boolean;
  };
  gaussianBlur(map: FloatArray, sigma: number): FloatArray;
  anomalyMap(grid: FloatArray, outH: number, outW: number, sigma: number): FloatArray;
  /** tensorForm: the tensor operations other devices run, instead of the CPU loops. */
  gaussianBlurForm(map: FloatArray, sigma: number, tensorForm: boolean): FloatArray;
  /** A [cropH, cropW] map back to the original size; geometry [origH, origW, resizedH, resizedW, top, left]. */
  mapToOriginal(map: FloatArray, geometry: number[], tensorForm: boolean): FloatArray;
  reweightedScore(bank: FloatArray, queries: FloatArray, neighbours: number): number;
  /** A torchvision backbone built from a .pth file, run on an already normalised input [B, 3, H, W]. */
  torchvisionTaps(arch: string, weightsPath: string, layers: string, input: FloatArray): { taps: FloatArray[]; strides: number[]; channels: number[] };
  /** contextual: from the k-NN index lists (what training uses); contextualDense: by dense products (the reference). */
  headSimilarities(z: FloatArray, k: number, sigma: number): { knn: FloatArray; contextual: FloatArray; contextualDense: FloatArray; pairwise: FloatArray; bandwidth: number };
  /** reference: the autograd formulation instead of the fused CPU loss. */
  headLoss(z: FloatArray, w: FloatArray, margin: number, reference?: boolean): { loss: number; grad: FloatArray };
  /** Head training on batch x dim seeded uniform features: ms per iteration, every loss and the trained f; reference: dense contextual + autograd loss; lossReadEvery: iterations between loss read-backs (default 16); plateau: the adaptive budget (head.plateau). */
  headTraining(batch: number, dim: number, iterations: number, reference: boolean, threads: number, lossReadEvery?: number, plateau?: number): { msPerIteration: number; losses: number[]; fWeight: FloatArray; fBias: FloatArray };
  emaStep(partner: FloatArray, current: FloatArray, ema: number): FloatArray;
  /** fp32 GEMM rate (GFLOP/s): best of reps n x n x n products. Blocks the calling thread: benchmarks only. */
  gemmGflops(n: number, reps: number, threads: number): number;
  /** Read bandwidth (GB/s): best of reps float32 sums over `bytes`. Blocks the calling thread: benchmarks only. */
  readGBs(bytes: number, reps: number, threads: number): number;
  /** Best-of-reps ms of one k-NN search (random data). Benchmarks only. */
  knnMilliseconds(bankRows: number, queries: number, dim: number, reps: number, threads: number): number;
  /** Times every stage of every engine call from now on (replaces an armed crash probe). Benchmarks and tests only. */
  startStageTimer(): void;
  /** Wall ms per (operation, stage) summed since the last read; resets them. */
  readStageTimes(): { operation: string; stage: string; ms: number; spans: number }[];
  /** Which thread (numbered in order of first use) ran each engine's calls, per operation, since startStageTimer(); engine 0: model decoding. */
  readCallThreads(): { engine: number; operation: string; thread: number }[];
}

/** A model file decoded natively, before an engine is built from it. */
export interface DecodedModel {
  options: NativeOptions;
  model: unknown;
}

export interface NativeModule {
  createEngine(options: NativeOptions): Promise<NativeEngine>;
  /** Checks and decodes model-file bytes; `label` names them in errors. */
  decodeModel(bytes: Buffer, label: string): Promise<DecodedModel>;
  loadEngine(model: DecodedModel['model']): Promise<NativeEngine>;
  /**
   * PNG row filters undone on a pool thread (lib/io/png.ts): `filtered` is `height` rows of a filter
   * type byte and `width * channels` bytes; the result is RGB, or null for a filter type PNG does not have.
   */
  unfilterPng(filtered: Uint8Array, width: number, height: number, channels: number): Promise<Buffer | null>;
  /** The addon's option keys, in order, with its C++ defaults (compared with lib/option_table.ts). */
  optionDefaults(): Record<string, unknown>;
  /** The torchvision architectures the addon builds, with their taps (compared with lib/io/weights.ts). */
  torchvisionCatalog(): Record<string, { taps: string[]; defaults: string[] }>;
  runtime(): { torchVersion: string; cudaBuild: boolean; cudaDevices: number; cxxStandard: number; crashReports: string | null };
  /** Single pipeline steps: only in the test addon ({@link TEST_ADDON}, loaded with RECONPATCH_TEST_PROBES=1). */
  internals?: NativeInternals;
  /** Crash probes (native/probes/): only in the test addon, like `internals`. */
  probes?: {
    crash(kind: 'segv' | 'bus' | 'fpe' | 'ill' | 'abort', onNewThread?: boolean): void;
    crashAtStage(stage: string, kind: 'segv' | 'bus' | 'fpe' | 'ill' | 'abort'): void;
  };
}

/**
 * The test addon's file name: the addon plus `internals` and `probes` (native/probes/), built beside
 * each local build's reconpatch.node (CMakeLists.txt, RECONPATCH_TEST_ADDON) and never packaged, so
 * the addon users get carries no test code. `RECONPATCH_TEST_PROBES=1` when the addon loads picks it.
 */
export const TEST_ADDON = 'reconpatch_probes.node';

/** The package root: one level above lib/ (sources) or dist/ (build). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

/** An addon binary and the libtorch ABI it was built against. */
export interface AddonBinary {
  file: string;
  kind: 'build' | 'prebuild';
  abi: AddonAbi;
  /** The libtorch a local build was compiled against (from its reconpatch.json). */
  builtAgainst?: string;
}

function readAbi(file: string): (AddonAbi & { libDir?: string }) | undefined {
  try {
    const j = JSON.parse(readFileSync(path.join(path.dirname(file), 'reconpatch.json'), 'utf8')) as AddonAbi & { libDir?: string };
    return j.torch && (j.variant === 'cpu' || j.variant === 'cuda') ? { ...j, cuda: j.cuda || undefined } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The addon binaries of this package: local builds (`build/Release`, `build-<tag>/Release`; not with
 * `PREBUILDS_ONLY`), then the prebuilds (`prebuilds/<platform>-<arch>/<tag>/`). `RECONPATCH_ADDON`
 * (a `.node` file with its `reconpatch.json` beside it, e.g. a sanitizer build) replaces the list.
 */
export function addonBinaries(root = packageRoot): AddonBinary[] {
  const out: AddonBinary[] = [];
  const add = (file: string, kind: AddonBinary['kind']) => {
    const abi = readAbi(file);
    if (abi && existsSync(file)) out.push({ file, kind, abi: { torch: abi.torch, variant: abi.variant, cuda: abi.cuda }, builtAgainst: kind === 'build' ? abi.libDir : undefined });
  };
  if (process.env.RECONPATCH_ADDON) {
    add(path.resolve(process.env.RECONPATCH_ADDON), 'build');
    return out;
  }
  if (!process.env.PREBUILDS_ONLY) {
    const builds = readdirSync(root).filter((d) => d === 'build' || d.startsWith('build-')).sort();
    for (const d of builds) add(path.join(root, d, 'Release/reconpatch.node'), 'build');
  }
  const pre = path.join(root, 'prebuilds', `${process.platform}-${process.arch}`);
  if (existsSync(pre)) for (const tag of readdirSync(pre).sort()) add(path.join(pre, tag, 'reconpatch.node'), 'prebuild');
  return out;
}

/** The libtorch and addon binary the loader picked, for `info` and diagnostics. */
export interface LoadedAddon {
  libtorch: Libtorch;
  addon: AddonBinary;
}

let cached: NativeModule | undefined;
let loaded: LoadedAddon | undefined;

/** Which libtorch and addon binary were loaded (undefined before the first native call). */
export function loadedAddon(): LoadedAddon | undefined {
  return loaded;
}

/**
 * Picks the first libtorch (in {@link findLibtorches} order, then each local build's own) for which
 * an addon binary of the same ABI exists; throws ERR_NATIVE_LOAD listing both sides otherwise.
 */
export function pickAddon(root = packageRoot, cacheDir = defaultCacheDir()): LoadedAddon {
  const binaries = addonBinaries(root);
  const { found, notes } = findLibtorches(cacheDir);
  const candidates = [...found];
  if (!process.env.RECONPATCH_LIBTORCH) {
    for (const b of binaries) {
      if (!b.builtAgainst) continue;
      const t = describeLibtorch(b.builtAgainst, 'build');
      if (t) candidates.push(t);
    }
  }
  for (const t of candidates) {
    const tag = abiTag(t);
    const addon = binaries.find((b) => abiTag({ version: b.abi.torch, variant: b.abi.variant, cuda: b.abi.cuda }) === tag);
    if (addon) return { libtorch: t, addon };
  }
  throw new ReconpatchError('ERR_NATIVE_LOAD', noMatchMessage(binaries, candidates, notes));
}

function noMatchMessage(binaries: AddonBinary[], libtorches: Libtorch[], notes: string[]): string {
  const have = binaries.length
    ? binaries.map((b) => `${describeAbi({ version: b.abi.torch, variant: b.abi.variant, cuda: b.abi.cuda })} (${b.kind}: ${path.relative(packageRoot, b.file)})`).join('; ')
    : `none for ${process.platform}-${process.arch}`;
  const seen = libtorches.length ? libtorches.map((t) => `${describeAbi(t)} from ${t.source} at ${t.libDir}`).join('; ') : 'none';
  return [
    'reconpatch: no native addon matches a libtorch on this machine.',
    `  addons in this package: ${have}`,
    `  libtorches found: ${seen}`,
    ...notes.map((n) => `  note: ${n}`),
    '  ways out (one is enough):',
    '    Debian bookworm, CPU:        sudo apt-get install libtorch1.13 libopenblas0-pthread',
    '    PyTorch 2.13 CPU wheel:      npx reconpatch libtorch --variant cpu --download   (or pip install torch==2.13.0+cpu)',
    '    PyTorch 2.14.1 CUDA 13 wheel: npx reconpatch libtorch --variant cuda --download  (or pip install torch==2.14.1)',
    '    any other libtorch:          Torch_DIR=<libtorch>/share/cmake/Torch npm rebuild reconpatch   (builds from source: cmake, g++)',
  ].join('\n');
}

/** The addon, loaded once per thread. Throws ERR_NATIVE_LOAD with what to do. */
export function native(): NativeModule {
  if (cached) return cached;
  const pick = pickAddon();
  try {
    preloadLibtorch(pick.libtorch);
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const help =
      pick.libtorch.variant === 'cuda'
        ? 'a library it needs (an NVIDIA runtime wheel) is missing; `npx reconpatch libtorch --variant cuda` assembles them'
        : 'it is incomplete or for another platform';
    throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: ${describeAbi(pick.libtorch)} from ${pick.libtorch.source} at ${pick.libtorch.libDir} could not be loaded: ${help}.\n  cause: ${msg}`, { cause: err });
  }
  // Tests and benchmarks ask for the test addon of the build the loader picked (same ABI, same objects).
  if (process.env.RECONPATCH_TEST_PROBES === '1') {
    const file = path.join(path.dirname(pick.addon.file), TEST_ADDON);
    if (!existsSync(file)) {
      throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: RECONPATCH_TEST_PROBES=1 asks for the test addon, but ${file} does not exist: ` +
        'only a checkout\'s builds have one (the prebuilds and installs from source never do); unset RECONPATCH_TEST_PROBES or build with RECONPATCH_TEST_ADDON=ON');
    }
    pick.addon = { ...pick.addon, file };
  }
  let mod: NativeModule;
  try {
    const require = createRequire(import.meta.url);
    mod = require(pick.addon.file) as NativeModule;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    const help = /lib(torch|c10)[^ ]*\.so/.test(msg)
      ? pick.libtorch.source === 'debian'
        ? 'the system libtorch is missing or broken. On Debian bookworm install it with `sudo apt-get install libtorch1.13 libopenblas0-pthread`; to build from source install `libtorch-dev` too (`sudo bash scripts/setup.sh` does both).'
        : `${describeAbi(pick.libtorch)} at ${pick.libtorch.libDir} does not provide what the addon needs; rebuild it against this libtorch: Torch_DIR=${pick.libtorch.torchDir ?? '<libtorch>/share/cmake/Torch'} npm rebuild reconpatch.`
      : 'the native addon could not be loaded.';
    throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: ${help}\n  addon: ${pick.addon.file}\n  cause: ${msg}`, { cause: err });
  }
  // An addon built from other sources than this JavaScript (a stale build) would read options wrongly.
  const drift = [...optionTableDrift(mod.optionDefaults()), ...torchvisionDrift(mod.torchvisionCatalog())];
  if (typeof mod.unfilterPng !== 'function') drift.push('the addon has no unfilterPng (built before lib/io/png.ts)');
  if (drift.length) {
    throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: the addon ${pick.addon.file} does not match this package's JavaScript ` +
      `(rebuild it: npm rebuild reconpatch):\n  ${drift.join('\n  ')}`);
  }
  cached = mod;
  loaded = pick;
  return cached;
}

/** The test addon's single pipeline steps; throws ERR_NATIVE_LOAD when the addon users get was loaded instead. */
export function nativeInternals(): NativeInternals {
  const { internals } = native();
  if (!internals) {
    throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: internals are only in the test addon (${TEST_ADDON}); ` +
      'set RECONPATCH_TEST_PROBES=1 before the addon loads (test files: import \'./support/test_addon.js\' first)');
  }
  return internals;
}

/**
 * What reconpatch runs on in this process: the libtorch the loader picked (and where it was
 * found), the addon binary, and the CUDA devices it sees. Loads the addon if it is not loaded yet.
 * @example
 * const rt = runtimeInfo();
 * console.log(`${rt.libtorch.version} ${rt.libtorch.variant}, ${rt.cudaDevices} GPU(s), addon ${rt.addon}`);
 */
export function runtimeInfo(): RuntimeInfo {
  const n = native();
  const r = n.runtime();
  const { libtorch, addon } = loaded!;
  return {
    libtorch: { version: libtorch.version, variant: libtorch.variant, cuda: libtorch.cuda ?? null, source: libtorch.source, libDir: libtorch.libDir },
    builtWith: r.torchVersion,
    addon: addon.file,
    prebuild: addon.kind === 'prebuild',
    cudaBuild: r.cudaBuild,
    cudaDevices: r.cudaDevices,
    crashReports: r.crashReports,
  };
}

/**
 * The result of {@link runtimeInfo}.
 * @example
 * const { libtorch, cudaDevices }: RuntimeInfo = runtimeInfo();
 * const device = cudaDevices > 0 ? 'cuda' : 'cpu';
 */
export interface RuntimeInfo {
  /** The libtorch in use: version, `'cpu'` or `'cuda'`, its CUDA version, where the loader found it, its library directory. */
  libtorch: { version: string; variant: 'cpu' | 'cuda'; cuda: string | null; source: LibtorchSource; libDir: string };
  /** The libtorch version the addon was compiled against (same minor release as `libtorch.version`). */
  builtWith: string;
  /** The addon binary loaded. */
  addon: string;
  /** Whether `addon` is one of the package's prebuilds (else a local build). */
  prebuild: boolean;
  /** Compiled against a CUDA libtorch: `device: 'cuda'` can work where a GPU is visible. */
  cudaBuild: boolean;
  /** CUDA devices visible now (0 on a CPU build or without a GPU). */
  cudaDevices: number;
  /**
   * Where native crash reports are written (README "Crash reports"), or null when the crash
   * handler is off (`RECONPATCH_CRASH_HANDLER=0`, or a sanitizer build).
   */
  crashReports: string | null;
}
