#include "core/patch_features.h"

#include "core/error.h"

namespace F = torch::nn::functional;

namespace rp {

namespace {

// [B, C, h, w] -> [B, C, k, k, h, w]: every cell's k x k neighbourhood (zero padded).
torch::Tensor neighbourhoods(const torch::Tensor& tap, int64_t k) {
  auto u = F::unfold(tap, F::UnfoldFuncOptions({k, k}).padding(k / 2).stride(1));  // [B, C*k*k, h*w]
  return u.view({tap.size(0), tap.size(1), k, k, tap.size(2), tap.size(3)});
}

}  // namespace

torch::Tensor patchFeatures(const std::vector<torch::Tensor>& taps, int64_t patchSize, int64_t pretrainDim,
                            int64_t targetDim, PatchGrid* grid) {
  RP_CHECK(!taps.empty(), Internal, "patchFeatures needs at least one feature map");
  const int64_t B = taps[0].size(0);
  const int64_t H = taps[0].size(2), W = taps[0].size(3);
  if (grid) *grid = PatchGrid{H, W};
  std::vector<torch::Tensor> perTap;
  perTap.reserve(taps.size());
  for (size_t i = 0; i < taps.size(); ++i) {
    const auto& tap = taps[i];
    const int64_t C = tap.size(1), h = tap.size(2), w = tap.size(3);
    auto p = neighbourhoods(tap, patchSize);  // [B, C, k, k, h, w]
    if (h != H || w != W) {
      // The reference resizes each of the C*k*k neighbourhood channels to the first grid.
      p = F::interpolate(p.reshape({B * C * patchSize * patchSize, 1, h, w}),
                         F::InterpolateFuncOptions()
                             .size(std::vector<int64_t>{H, W})
                             .mode(torch::kBilinear)
                             .align_corners(false))
              .view({B, C, patchSize, patchSize, H, W});
    }
    // [B, C, k, k, H, W] -> [B*H*W, 1, C*k*k] channel-major per patch, then pool to pretrainDim.
    auto flat = p.permute({0, 4, 5, 1, 2, 3}).reshape({B * H * W, 1, C * patchSize * patchSize});
    perTap.push_back(torch::adaptive_avg_pool1d(flat, {pretrainDim}).squeeze(1));  // [N, pretrainDim]
  }
  auto stacked = torch::stack(perTap, 1);  // [N, taps, pretrainDim]
  auto agg = torch::adaptive_avg_pool1d(stacked.reshape({B * H * W, 1, -1}), {targetDim});  // [N, 1, targetDim]
  return agg.view({B, H * W, targetDim});
}

}  // namespace rp
