// Approximate greedy coreset (PatchCore §3.2; reference ApproximateGreedyCoresetSampler).
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <functional>
#include <optional>
#include <vector>

namespace rp {

struct CoresetOptions {
  double ratio = 0.1;           // fraction of rows to keep
  int64_t count = 0;            // > 0: keep exactly this many rows (at most all), instead of `ratio`
  int64_t projectionDim = 128;  // random projection used only for selection
  int64_t numStarts = 10;       // random start points: initial distance = mean distance to them
  uint64_t seed = 0;
  bool deviceLoop = false;      // the device loop even on the CPU (tests of the GPU-shaped path)
};

// Called as (done, total) during selection, throttled by the caller's needs.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

// Number of rows a coreset of `rows` keeps: floor(ratio * rows), at least 1.
int64_t coresetSize(int64_t rows, double ratio);

// Random projection [D, projectionDim] drawn from the seed (N(0, 1/projectionDim)).
torch::Tensor coresetProjection(int64_t dim, const CoresetOptions& opts, const torch::Device& device);

// Greedy farthest-point selection on projected points.
// projected: [N, d] float32 (on the CPU also bfloat16; distances are computed in float32);
// starts: [S] int64 -> selected indices [M] int64, in selection order.
// Polls `cancel` between selections (throws ErrorCode::Aborted). *radius2, when given, receives
// the coverage radius the selection stopped at: the largest squared distance from any point to
// its nearest selected one (what the next selection would have had).
torch::Tensor greedyCoresetIndices(const torch::Tensor& projected, const torch::Tensor& starts, int64_t count,
                                   const ProgressFn& progress = nullptr, const std::atomic<bool>* cancel = nullptr,
                                   double* radius2 = nullptr);

// The same recurrence as tensor operations on any device (the loop CUDA runs; tests run it on the
// CPU), without a host round trip per selection: the argmax stays on the device and the selected
// indices accumulate in a device tensor; the host reads the device once, at the end. Between
// selections it only polls `cancel` (a host flag) and reports progress every kDeviceSyncEvery
// selections. Distances are float32 whatever the points' dtype.
constexpr int64_t kDeviceSyncEvery = 256;
torch::Tensor greedyCoresetIndicesDevice(const torch::Tensor& projected, const torch::Tensor& starts, int64_t count,
                                         const ProgressFn& progress = nullptr,
                                         const std::atomic<bool>* cancel = nullptr, double* radius2 = nullptr);

// The same selection, exactly, on the CPU with far fewer distance evaluations: points are grouped
// in blocks around anchors, and a block is skipped when the triangle inequality proves the new
// center cannot be nearer to any of its points than their current distance. Reorders the rows
// of `projected` [N, d] (contiguous float32 or bfloat16) in place; returns original indices [M].
torch::Tensor greedyCoresetIndicesPruned(torch::Tensor projected, const torch::Tensor& starts, int64_t count,
                                         const ProgressFn& progress = nullptr,
                                         const std::atomic<bool>* cancel = nullptr, double* radius2 = nullptr);

// The whole sampler over rows stored in chunks ([n_i, D] each, the bank as it was built):
// project, draw starts, select. Returns indices into the concatenation of the chunks. The projected
// points are stored in bfloat16 (distances in float32) on every device, so the CPU and the GPU
// select on the same points; on the CPU the pruned loop runs when the selection is long enough
// to repay its setup, other devices run the device loop.
// `device`: where the projection and the selection run (default: the chunks' device); the chunks
// may stay on the host, each is moved there only to be projected.
torch::Tensor approximateGreedyCoreset(const std::vector<torch::Tensor>& chunks, const CoresetOptions& opts,
                                       const ProgressFn& progress = nullptr,
                                       const std::atomic<bool>* cancel = nullptr, double* radius2 = nullptr,
                                       std::optional<torch::Device> device = std::nullopt);

// Continues a greedy selection over new points, from an existing coreset: the new point farthest
// from everything selected so far (the bank, then the points added here) is added while its
// squared distance exceeds `radius2`, the radius the original selection stopped at. New points
// that lie within the bank's coverage add nothing. bank: [B, p], fresh: [M, p] (projected, float32)
// -> indices into `fresh` [K], in selection order. Progress reports (selected, M).
torch::Tensor extendCoreset(const torch::Tensor& bank, const torch::Tensor& fresh, double radius2,
                            const ProgressFn& progress = nullptr, const std::atomic<bool>* cancel = nullptr);

// A lower bound of a coreset's stopping radius from its rows alone (for models saved before the
// radius was kept): selected points were never nearer each other than that radius, so the
// smallest distance between two rows bounds it from below. rows: [B, p] -> squared distance.
double coverageRadiusBound(const torch::Tensor& rows);

}  // namespace rp
