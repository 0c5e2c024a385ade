// Tensor-free entry points to single pipeline steps, for unit and parity tests through the addon.
// Inputs and outputs are row-major float arrays with explicit shapes. Small inputs only.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/float_array.h"
#include "core/options.h"
#include "core/raw_image.h"

namespace rp {


namespace internals {

// patchFeatures over given taps ([1, C_i, h_i, w_i] each) -> [L, targetDim]; tensorOps: the
// tensor-operation path instead of the CPU kernel
FloatArray patchFeatures(const std::vector<FloatArray>& taps, int64_t patchSize, int64_t pretrainDim,
                         int64_t targetDim, bool tensorOps = false);
// preprocess -> [3, h, w] (no normalisation)
FloatArray preprocess(const RawImageView& image, int64_t resize, int64_t crop, ResizeMode mode);
// greedy coreset on projected points [N, d] from the given starts -> indices; `pruned`: the
// block-pruned CPU loop instead of the plain one. threads > 0 sets libtorch's intra-op threads.
// bfloat16: on the points rounded to bfloat16 (what fit selects on, on the CPU).
// deviceLoop: the tensor-op loop the GPU runs (greedyCoresetIndicesDevice), here on the CPU.
std::vector<int64_t> greedyCoreset(const FloatArray& projected, const std::vector<int64_t>& starts, int64_t count,
                                   bool pruned, int threads, bool bfloat16 = false, bool deviceLoop = false);
// features [n, D] times the coreset's random projection for `seed` -> [n, projectionDim]
FloatArray coresetProject(const FloatArray& features, int64_t projectionDim, uint64_t seed);
// exact k-NN: bank [n, d], queries [q, d] -> squared distances [q, k] and indices [q, k], over the
// bank without rows [excludeBegin, excludeEnd)
FloatArray knn(const FloatArray& bank, const FloatArray& queries, int64_t k, std::vector<int64_t>* indices,
               int64_t excludeBegin = 0, int64_t excludeEnd = 0);
// gaussian blur of one map [H, W]
FloatArray gaussianBlur(const FloatArray& map, double sigma);
// patch-score grid [h, w] -> map [outH, outW]
FloatArray anomalyMap(const FloatArray& grid, int64_t outH, int64_t outW, double sigma);
// Eq. 7 image score for one image's patch features [L, D] against a bank [n, D].
float reweightedScore(const FloatArray& bank, const FloatArray& queries, int64_t neighbours);

// ReConPatch head pieces on z [N, d]: the k-NN matrix, contextual and pairwise similarities.
struct HeadSimilarities {
  FloatArray knn, contextual, pairwise;
};
HeadSimilarities headSimilarities(const FloatArray& z, int64_t k, double sigma);
// Relaxed contrastive loss and its gradient d loss / d z.
float headLoss(const FloatArray& z, const FloatArray& w, double margin, FloatArray* grad);
// One EMA step on a parameter: ema * partner + (1 - ema) * current.
FloatArray emaStep(const FloatArray& partner, const FloatArray& current, double ema);

// A torchvision backbone (torchvision_backbones.h) built from a .pth file: input [B, 3, H, W],
// already normalised -> the taps (finest first) and, in *strides / *channels, what it declares.
std::vector<FloatArray> torchvisionTaps(const std::string& arch, const std::string& weightsPath,
                                        const std::string& layers, const FloatArray& input,
                                        std::vector<int64_t>* strides, std::vector<int64_t>* channels);

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


}  // namespace internals
}  // namespace rp
