#include "core/pipeline/scorer.h"

#include <ATen/Parallel.h>

#include <algorithm>
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

// Positions in the 'reflect'-extended signal of length n padded by r on both sides: entry i + r
// for i in [-r, n + r).
std::vector<int64_t> reflectPositions(int64_t n, int64_t r) {
  std::vector<int64_t> idx(n + 2 * r);
  for (int64_t i = -r; i < n + r; ++i) {
    int64_t m = ((i % (2 * n)) + 2 * n) % (2 * n);
    idx[i + r] = m < n ? m : 2 * n - 1 - m;
  }
  return idx;
}

// The same as an index tensor on `device`.
torch::Tensor reflectIndex(int64_t n, int64_t r, const torch::Device& device) {
  return torch::tensor(reflectPositions(n, r), torch::kInt64).to(device);
}

// [B, H, W] float32 on the CPU -> the same blur as the tensor form below (rows, then columns, the
// kernel's taps in the same order), as plain loops on ATen's threads. The tensor form's two
// convolutions and gathers took ~2-3 ms of a 224-px score (bench/NOTES.md).
torch::Tensor gaussianBlurCpu(const torch::Tensor& maps, const torch::Tensor& kernel) {
  auto in = maps.contiguous();
  const int64_t B = in.size(0), H = in.size(1), W = in.size(2), taps = kernel.size(0), r = (taps - 1) / 2;
  auto k = kernel.contiguous();
  const float* w = k.data_ptr<float>();
  auto across = torch::empty_like(in), out = torch::empty_like(in);
  const auto xs = reflectPositions(W, r), ys = reflectPositions(H, r);
  const float* src = in.data_ptr<float>();
  float* mid = across.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  at::parallel_for(0, B * H, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const float* s = src + row * W;
      float* d = mid + row * W;
      for (int64_t x = 0; x < W; ++x) {
        float acc = 0.f;
        for (int64_t j = 0; j < taps; ++j) acc += w[j] * s[xs[x + j]];
        d[x] = acc;
      }
    }
  });
  at::parallel_for(0, B * H, 16, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, y = row % H;
      float* d = dst + row * W;
      std::fill(d, d + W, 0.f);
      for (int64_t j = 0; j < taps; ++j) {
        const float* s = mid + (b * H + ys[y + j]) * W;
        const float wj = w[j];
        for (int64_t x = 0; x < W; ++x) d[x] += wj * s[x];
      }
    }
  });
  return out;
}

}  // namespace

torch::Tensor gaussianBlur(const torch::Tensor& maps, double sigma, bool tensorForm) {
  if (sigma <= 0) return maps;
  if (!tensorForm && maps.device().is_cpu() && maps.scalar_type() == torch::kFloat32) return gaussianBlurCpu(maps, gaussianKernel1d(sigma));
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
