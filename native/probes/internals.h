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
// Tiles along one axis of `length` pixels (pipeline/tiles.h), each tile's grid taken as
// ceil(size / cell) cells -> per tile [origin, size, keptFrom, keptTo] (kept: in the tile's cells).
std::vector<int64_t> tilePlan(int64_t length, int64_t tile, int64_t overlap, int64_t align, int64_t cell);
// A TorchScript backbone loaded on the CPU -> what the graph passes did to it (BackboneInfo::graphPasses).
std::string backbonePasses(const std::string& path);
// features [n, D] times the coreset's random projection for `seed` -> [n, projectionDim]
FloatArray coresetProject(const FloatArray& features, int64_t projectionDim, uint64_t seed);
// exact k-NN: bank [n, d], queries [q, d] -> squared distances [q, k] and indices [q, k], over the
// bank without rows [excludeBegin, excludeEnd). kernel: "auto" (the engine's choice), "float32"
// or "int8" (int8 where the CPU has VNNI). *int8Queries: the queries the int8 pass searched.
FloatArray knn(const FloatArray& bank, const FloatArray& queries, int64_t k, std::vector<int64_t>* indices,
               const std::string& kernel, int64_t excludeBegin, int64_t excludeEnd, int64_t* int8Queries);
// The int8 k-NN: whether the CPU supports it, whether it is on; turning it off forces float32.
struct KnnInt8State {
  bool supported = false, enabled = false;
};
KnnInt8State knnInt8State();
void setKnnInt8Enabled(bool enabled);
// gaussian blur of one map [H, W]
FloatArray gaussianBlur(const FloatArray& map, double sigma);
// patch-score grid [h, w] -> map [outH, outW]
FloatArray anomalyMap(const FloatArray& grid, int64_t outH, int64_t outW, double sigma);
// Gaussian blur of one map; tensorForm: the tensor operations other devices run.
FloatArray gaussianBlurForm(const FloatArray& map, double sigma, bool tensorForm);
// mapToOriginal for a [cropH, cropW] map and geometry {origH, origW, resizedH, resizedW, top, left};
// tensorForm: the tensor operations other devices run.
FloatArray mapToOriginal(const FloatArray& map, const std::vector<int64_t>& geometry, bool tensorForm);
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
// lossReadEvery: how often the losses are read back (0: the default); plateau: HeadOptions::plateau;
// fWeight, fBias: the trained f.
struct HeadTraining {
  double msPerIteration = 0;
  std::vector<double> losses;
  FloatArray fWeight, fBias;
};
HeadTraining headTraining(int64_t batch, int64_t dim, int64_t iterations, bool reference, int threads,
                          int64_t lossReadEvery = 0, double plateau = 0);
// One EMA step on a parameter: ema * partner + (1 - ema) * current.
FloatArray emaStep(const FloatArray& partner, const FloatArray& current, double ema);

// A torchvision backbone (torchvision_backbones.h) built from a .pth file: input [B, 3, H, W],
// already normalised -> the taps (finest first) and, in *strides / *channels, what it declares.
std::vector<FloatArray> torchvisionTaps(const std::string& arch, const std::string& weightsPath,
                                        const std::string& layers, const FloatArray& input,
                                        std::vector<int64_t>* strides, std::vector<int64_t>* channels);

}  // namespace internals
}  // namespace rp
