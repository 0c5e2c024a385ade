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
// bank without rows [excludeBegin, excludeEnd). kernel: "auto" (the engine's choice), "float32"
// or "int8" (int8 where the CPU has VNNI).
FloatArray knn(const FloatArray& bank, const FloatArray& queries, int64_t k, std::vector<int64_t>* indices,
               const std::string& kernel = "auto", int64_t excludeBegin = 0, int64_t excludeEnd = 0);
// The int8 k-NN: whether the CPU supports it, whether it is on; turning it off forces float32.
struct KnnInt8State {
  bool supported = false, enabled = false;
};
KnnInt8State knnInt8State();
void setKnnInt8Enabled(bool enabled);
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
// gaussian blur of one map [H, W]
FloatArray gaussianBlur(const FloatArray& map, double sigma);
// patch-score grid [h, w] -> map [outH, outW]
FloatArray anomalyMap(const FloatArray& grid, int64_t outH, int64_t outW, double sigma);
// Eq. 7 image score for one image's patch features [L, D] against a bank [n, D].
float reweightedScore(const FloatArray& bank, const FloatArray& queries, int64_t neighbours);

// ReConPatch head pieces on z [N, d]: the k-NN matrix, contextual and pairwise similarities.
// contextualDense: the same by dense products (the reference formulation); bandwidth: the batch's
// kthNeighbourBandwidth (SigmaRule::Knn, before the sigma scale).
struct HeadSimilarities {
  FloatArray knn, contextual, contextualDense, pairwise;
  double bandwidth = 0;
};
HeadSimilarities headSimilarities(const FloatArray& z, int64_t k, double sigma);
// Relaxed contrastive loss and its gradient d loss / d z; reference: the autograd formulation.
float headLoss(const FloatArray& z, const FloatArray& w, double margin, FloatArray* grad, bool reference = false);
// Head training on N x D features drawn from a fixed seed (uniform [0, 1), like post-ReLU
// features): milliseconds per iteration and the loss of every iteration. reference: the dense
// contextual products and the autograd loss.
// lossReadEvery: how often the losses are read back (0: the default); fWeight, fBias: the trained f.
struct HeadTraining {
  double msPerIteration = 0;
  std::vector<double> losses;
  FloatArray fWeight, fBias;
};
HeadTraining headTraining(int64_t batch, int64_t dim, int64_t iterations, bool reference, int threads,
                          int64_t lossReadEvery = 0);
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
