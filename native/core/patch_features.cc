#include "core/patch_features.h"

#include "core/error.h"

namespace rp {

namespace {

// Bilinear resampling weights (align_corners = false, as F.interpolate): out = R · in along one
// axis. -> [outSize, inSize]
torch::Tensor bilinearMatrix(int64_t inSize, int64_t outSize, const torch::TensorOptions& options) {
  auto r = torch::zeros({outSize, inSize}, torch::kFloat32);
  auto a = r.accessor<float, 2>();
  const float scale = static_cast<float>(inSize) / static_cast<float>(outSize);
  for (int64_t o = 0; o < outSize; ++o) {
    float src = std::max(0.0f, scale * (o + 0.5f) - 0.5f);
    int64_t i0 = std::min(static_cast<int64_t>(src), inSize - 1);
    int64_t i1 = std::min(i0 + 1, inSize - 1);
    float lambda = src - static_cast<float>(i0);
    a[o][i0] += 1.0f - lambda;
    a[o][i1] += lambda;
  }
  return r.to(options.device());
}

// [B, C, h, w] -> [B, h, w, C*k*k]: every cell's k x k neighbourhood (zero padded), flattened
// channel-major (c, ky, kx) as the reference's unfold + reshape.
torch::Tensor neighbourhoods(const torch::Tensor& tap, int64_t k) {
  const int64_t B = tap.size(0), C = tap.size(1), h = tap.size(2), w = tap.size(3);
  auto u = torch::im2col(tap, {k, k}, {1, 1}, {k / 2, k / 2}, {1, 1});  // [B, C*k*k, h*w]
  return u.transpose(1, 2).contiguous().view({B, h, w, C * k * k});
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
  for (const auto& tap : taps) {
    const int64_t h = tap.size(2), w = tap.size(3);
    auto p = neighbourhoods(tap, patchSize);  // [B, h, w, F], F = C*k*k
    const int64_t F = p.size(3);
    if (h != H || w != W) {
      // The reference resizes each of the F neighbourhood planes bilinearly to the first grid.
      // Bilinear resizing is separable and linear, so it is two small GEMMs on this layout:
      // columns (w -> W), then rows (h -> H), staying [B, rows, cols, F] with F contiguous.
      auto rx = bilinearMatrix(w, W, tap.options());                      // [W, w]
      auto ry = bilinearMatrix(h, H, tap.options());                      // [H, h]
      // As plain 2-D GEMMs (tensordot): batched small products are far slower here.
      p = torch::tensordot(rx, p.reshape({B * h, w, F}), {1}, {1});                   // [W, B*h, F]
      p = p.view({W, B, h, F}).permute({1, 2, 0, 3}).reshape({B, h, W * F});          // [B, h, W*F]
      p = torch::tensordot(ry, p, {1}, {1}).permute({1, 0, 2}).reshape({B, H, W, F}); // [B, H, W, F]
    }
    // Each patch's F values, adaptive-average-pooled to pretrainDim. [B*H*W, pretrainDim]
    perTap.push_back(torch::adaptive_avg_pool1d(p.reshape({B * H * W, 1, F}), {pretrainDim}).squeeze(1));
  }
  auto stacked = torch::stack(perTap, 1);  // [N, taps, pretrainDim]
  auto agg = torch::adaptive_avg_pool1d(stacked.reshape({B * H * W, 1, -1}), {targetDim});  // [N, 1, targetDim]
  return agg.view({B, H * W, targetDim});
}

}  // namespace rp
