/**
 * Loads the native addon (prebuild or local build, via node-gyp-build) and types its surface.
 * A missing system libtorch is reported with the exact package to install.
 */
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { ReconpatchError } from './errors.js';

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
  resizeMode: 'shorter' | 'squash';
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
  headAlpha: number;
  headMargin: number;
  headNormalize: boolean;
  headInitIdentity: boolean;
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
  /** Images the bank was built from. */
  trainImages: number;
  /** Patch features extracted before the coreset. */
  trainPatches: number;
  /** The device the engine computes on: `'cpu'` or `'cuda:0'`-style. */
  device: string;
}

export interface NativeScore {
  score: number;
  map: Float32Array;
  width: number;
  height: number;
}

export interface FloatArray {
  data: Float32Array;
  shape: number[];
}

export interface NativeEngine {
  info(): NativeInfo;
  options(): NativeOptions;
  fitBegin(): void;
  fitAdd(images: RawFrame[]): Promise<void>;
  fitEnd(onProgress?: (stage: string, done: number, total: number, value: number) => void): Promise<void>;
  fitAbort(): void;
  cancel(): void;
  score(images: RawFrame[]): Promise<NativeScore[]>;
  save(path: string): Promise<void>;
  embed(images: [RawFrame]): Promise<FloatArray>;
  metadata(): string;
  /** Throws ERR_INVALID_IMAGE for frames this engine could not embed (geometry checks only; synchronous, cheap). */
  validate(images: RawFrame[]): void;
  setMetadata(metadata: string): void;
  setThreads(threads: number): void;
}

/** Single pipeline steps on small arrays, synchronous. For tests and tools, not for serving. */
export interface NativeInternals {
  /** tensorOps: the tensor-operation path (used off CPU) instead of the fused CPU kernel. */
  patchFeatures(taps: FloatArray[], patchSize: number, pretrainDim: number, targetDim: number, tensorOps?: boolean): FloatArray;
  preprocess(image: RawFrame, resize: number, crop: number, mode: 'shorter' | 'squash'): FloatArray;
  /** bfloat16: select on the points rounded to bfloat16, as fit does on the CPU. */
  greedyCoreset(projected: FloatArray, starts: number[], count: number, pruned: boolean, threads?: number, bfloat16?: boolean): number[];
  coresetProject(features: FloatArray, projectionDim: number, seed: number): FloatArray;
  backboneMilliseconds(backbone: string, size: number, batch: number, reps: number, threads: number): { backboneMs: number; patchFeaturesMs: number };
  knn(bank: FloatArray, queries: FloatArray, k: number): { distances: FloatArray; indices: number[] };
  gaussianBlur(map: FloatArray, sigma: number): FloatArray;
  anomalyMap(grid: FloatArray, outH: number, outW: number, sigma: number): FloatArray;
  reweightedScore(bank: FloatArray, queries: FloatArray, neighbours: number): number;
  /** A torchvision backbone built from a .pth file, run on an already normalised input [B, 3, H, W]. */
  torchvisionTaps(arch: string, weightsPath: string, layers: string, input: FloatArray): { taps: FloatArray[]; strides: number[]; channels: number[] };
  headSimilarities(z: FloatArray, k: number, sigma: number): { knn: FloatArray; contextual: FloatArray; pairwise: FloatArray };
  headLoss(z: FloatArray, w: FloatArray, margin: number): { loss: number; grad: FloatArray };
  emaStep(partner: FloatArray, current: FloatArray, ema: number): FloatArray;
  /** fp32 GEMM rate (GFLOP/s): best of reps n x n x n products. Blocks the calling thread: benchmarks only. */
  gemmGflops(n: number, reps: number, threads: number): number;
  /** Read bandwidth (GB/s): best of reps float32 sums over `bytes`. Blocks the calling thread: benchmarks only. */
  readGBs(bytes: number, reps: number, threads: number): number;
  /** Best-of-reps ms of one k-NN search (random data). Benchmarks only. */
  knnMilliseconds(bankRows: number, queries: number, dim: number, reps: number, threads: number): number;
  /** Seconds of the approximate greedy coreset on random rows x dim features. Benchmarks only. */
}

export interface NativeModule {
  createEngine(options: NativeOptions): Promise<NativeEngine>;
  loadEngine(path: string): Promise<NativeEngine>;
  internals: NativeInternals;
}

/** The package root: one level above lib/ (sources) or dist/ (build). */
export const packageRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

let cached: NativeModule | undefined;

/** The addon, loaded once per thread. Throws ERR_NATIVE_LOAD with what to do. */
export function native(): NativeModule {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  try {
    const load = require('node-gyp-build') as (dir: string) => NativeModule;
    cached = load(packageRoot);
    return cached;
  } catch (err) {
    const msg = err instanceof Error ? err.message : String(err);
    let help: string;
    if (/lib(torch|c10)[^ ]*\.so/.test(msg)) {
      help =
        'the system libtorch is missing. On Debian bookworm install it with ' +
        '`sudo apt-get install libtorch1.13 libopenblas0-pthread`; to build from source install `libtorch-dev` too ' +
        '(`sudo bash scripts/setup.sh` does both), or build against a libtorch of your own (README: Installing and building).';
    } else if (/No native build was found/.test(msg)) {
      help =
        'no prebuilt binary matches this platform (prebuilds: linux-x64 glibc) and no local build exists; ' +
        'run `npm rebuild reconpatch` to build from source (needs libtorch-dev: `sudo bash scripts/setup.sh`)' +
        (process.env.PREBUILDS_ONLY ? ' without PREBUILDS_ONLY set.' : '.');
    } else {
      help = 'the native addon could not be loaded.';
    }
    throw new ReconpatchError('ERR_NATIVE_LOAD', `reconpatch: ${help}\n  cause: ${msg}`, { cause: err });
  }
}
