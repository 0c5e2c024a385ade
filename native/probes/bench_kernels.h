// Timed kernels for the benchmarks (bench/), beside the pipeline steps of internals.h; the addon
// exposes both as `internals`.
#pragma once
#include <cstdint>
#include <string>

#include "core/float_array.h"

namespace rp::internals {

// float32 GEMM vs int8 k-NN (k = 1) side by side on one bank: best-of-reps milliseconds each,
// rows re-scored per query, queries the int8 path sent to the GEMM, and how the results agree.
// bank / queries null: standard-normal rows of bankRows / queryRows x dim from a fixed seed.
struct KnnComparison {
  double float32Ms = 0, int8Ms = 0, rescoredPerQuery = 0;
  int64_t queries = 0, bankRows = 0, fallbackQueries = 0, sameIndex = 0;
  double maxRelativeGap = 0;  // largest |d_int8 - d_float32| / d_float32 over all queries
  bool int8 = false;          // the int8 path ran (VNNI present)
};
KnnComparison knnCompare(const FloatArray* bank, const FloatArray* queries, int64_t bankRows, int64_t queryRows,
                         int64_t dim, int reps, int threads);
// The machine's fp32 GEMM rate through libtorch: best of `reps` n x n x n products, in GFLOP/s.
double gemmGflops(int64_t n, int reps, int threads);

// The machine's read bandwidth: best of `reps` 16-accumulator sums over `bytes` of float32 (far
// larger than the caches) on `threads` threads, in GB/s. The ceiling for streaming kernels such
// as the coreset loop.
double readGBs(int64_t bytes, int reps, int threads);

// Best-of-`reps` milliseconds for one backbone forward of `batch` random size x size images, and
// for the patch features (3x3 aggregation, pooling to 1024) of its taps.
struct BackboneTiming {
  double backboneMs = 0, patchFeaturesMs = 0;
};
BackboneTiming backboneMilliseconds(const std::string& nameOrPath, int64_t size, int64_t batch, int reps, int threads);

// Best-of-`reps` milliseconds for one FlatL2Index search of `queries` random rows against a random
// bank of `bankRows` x `dim` (k = 1).
double knnMilliseconds(int64_t bankRows, int64_t queries, int64_t dim, int reps, int threads);

}  // namespace rp::internals
