#include "core/pipeline/scorer.h"

#include <cmath>
#include <vector>

namespace F = torch::nn::functional;

namespace rp {

torch::Tensor maxImageScores(const torch::Tensor& patchScores) { return std::get<0>(patchScores.max(1)); }

torch::Tensor reweightedImageScores(const torch::Tensor& patchScores, const torch::Tensor& nnIndex,
                                    const torch::Tensor& queries, const KnnIndex& bank, int64_t neighbours,
                                    RowRange exclude) {
  torch::NoGradGuard noGrad;
  const int64_t B = patchScores.size(0);
  auto [sStar, argmax] = patchScores.max(1);                                     // [B], [B]
  auto qStar = queries.gather(1, argmax.view({B, 1, 1}).expand({B, 1, queries.size(2)})).squeeze(1);  // [B, D]
  auto mIdx = nnIndex.gather(1, argmax.view({B, 1})).squeeze(1);                 // [B]
  auto bankRows = bank.rows();
  auto mStar = bankRows.index_select(0, mIdx);                                   // [B, D]
  torch::Tensor supportD, supportI;
  bank.search(mStar, neighbours, &supportD, &supportI, exclude);                 // [B, b]
  auto support = bankRows.index_select(0, supportI.reshape(-1)).view({B, supportI.size(1), -1});  // [B, b, D]
  auto dist = (support - qStar.unsqueeze(1)).pow(2).sum(2).sqrt();              // [B, b]
  auto weight = 1 - torch::softmax(dist, 1).select(1, 0);                       // [B]
  return weight * sStar;
}

torch::Tensor gaussianKernel1d(double sigma) {
  const int64_t radius = static_cast<int64_t>(4.0 * sigma + 0.5);
  std::vector<double> w(2 * radius + 1);
  double sum = 0;
  for (int64_t i = -radius; i <= radius; ++i) sum += (w[i + radius] = std::exp(-0.5 * i * i / (sigma * sigma)));
  for (auto& v : w) v /= sum;
  return torch::tensor(w, torch::kFloat64).to(torch::kFloat32);
}

namespace {

// Indices of the 'reflect'-extended signal of length n padded by r on both sides.
torch::Tensor reflectIndex(int64_t n, int64_t r, const torch::Device& device) {
  std::vector<int64_t> idx(n + 2 * r);
  for (int64_t i = -r; i < n + r; ++i) {
    int64_t m = ((i % (2 * n)) + 2 * n) % (2 * n);
    idx[i + r] = m < n ? m : 2 * n - 1 - m;
  }
  return torch::tensor(idx, torch::kInt64).to(device);
}

}  // namespace

torch::Tensor gaussianBlur(const torch::Tensor& maps, double sigma) {
  if (sigma <= 0) return maps;
  auto k = gaussianKernel1d(sigma).to(maps.device());
  const int64_t r = (k.size(0) - 1) / 2, H = maps.size(1), W = maps.size(2);
  auto x = maps.unsqueeze(1);  // [B, 1, H, W]
  x = x.index_select(3, reflectIndex(W, r, maps.device()));
  x = F::conv2d(x, k.view({1, 1, 1, -1}));
  x = x.index_select(2, reflectIndex(H, r, maps.device()));
  x = F::conv2d(x, k.view({1, 1, -1, 1}));
  return x.squeeze(1);
}

torch::Tensor anomalyMaps(const torch::Tensor& grid, int64_t outH, int64_t outW, double sigma) {
  auto up = F::interpolate(grid.unsqueeze(1), F::InterpolateFuncOptions()
                                                 .size(std::vector<int64_t>{outH, outW})
                                                 .mode(torch::kBilinear)
                                                 .align_corners(false));
  return gaussianBlur(up.squeeze(1), sigma);
}

}  // namespace rp
