#include "core/pipeline/patch_features.h"

#include <ATen/Parallel.h>

#include <cmath>

#include "core/error.h"
#include "core/pipeline/bilinear.h"
#include "core/simd.h"

namespace rp {

namespace {

// Bilinear resampling weights (align_corners = false, as F.interpolate): out = R · in along one
// axis. -> [outSize, inSize]
torch::Tensor bilinearMatrix(int64_t inSize, int64_t outSize, const torch::TensorOptions& options) {
  auto r = torch::zeros({outSize, inSize}, torch::kFloat32);
  auto a = r.accessor<float, 2>();
  const auto taps = bilinearTaps(inSize, outSize);
  for (int64_t o = 0; o < outSize; ++o) {
    a[o][taps[o].i0] += taps[o].w0;
    a[o][taps[o].i1] += taps[o].w1;
  }
  return r.to(options.device());
}

// One value resized along one axis from its two source values, as a GEMM with bilinearMatrix's
// row accumulates them (fused multiply-adds in order; a clamped edge has one entry, the two
// weights summed). OpenBLAS's kernels still round ~2% of the values differently (1 ulp).
inline float lerpAsGemm(const BilinearTap& t, float a, float b) {
  return t.i0 == t.i1 ? ((0.0f + t.w0) + t.w1) * a : std::fma(t.w1, b, t.w0 * a);
}

// One output row [W, P] of the resize from its two source rows (each [w, P]).
RP_X86_V3_CLONES void resizeRow(const float* r0, const float* r1, const BilinearTap& ty, const BilinearTap* xs, int64_t W,
                                int64_t P, float* o) {
  for (int64_t x = 0; x < W; ++x, o += P) {
    const BilinearTap& tx = xs[x];
    const float *a = r0 + tx.i0 * P, *c = r0 + tx.i1 * P, *d = r1 + tx.i0 * P, *e = r1 + tx.i1 * P;
    for (int64_t j = 0; j < P; ++j) o[j] = lerpAsGemm(ty, lerpAsGemm(tx, a[j], c[j]), lerpAsGemm(tx, d[j], e[j]));
  }
}

// [B, h, w, P] -> [B, H, W, P] on CPU: bilinearMatrix's two products (columns, then rows; within
// 1 ulp, tested), two taps per axis, parallel over output rows on ATen's threads.
// The GEMM form ran on OpenBLAS's threads, whose workers then spin for ~0.1 s while the next
// backbone pass runs on OpenMP's: on two cores that made the score's backbone and patch features
// ~1.5-2x slower (bench/NOTES.md, "Where a score's time goes").
torch::Tensor resizeBilinearCpu(const torch::Tensor& p, int64_t H, int64_t W) {
  const int64_t B = p.size(0), h = p.size(1), w = p.size(2), P = p.size(3);
  auto in = p.contiguous();
  auto out = torch::empty({B, H, W, P}, torch::kFloat32);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const auto xs = bilinearTaps(w, W), ys = bilinearTaps(h, H);
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H;
      const BilinearTap& ty = ys[row % H];
      resizeRow(src + (b * h + ty.i0) * w * P, src + (b * h + ty.i1) * w * P, ty, xs.data(), W, P, dst + row * W * P);
    }
  });
  return out;
}

// Adaptive average pooling windows of F values into P outputs, as PyTorch's: [floor(j F / P),
// ceil((j + 1) F / P)).
struct Window {
  int64_t begin, end;
};
std::vector<Window> adaptiveWindows(int64_t F, int64_t P) {
  std::vector<Window> w(P);
  for (int64_t j = 0; j < P; ++j) w[j] = {(j * F) / P, ((j + 1) * F + P - 1) / P};
  return w;
}

// out[j] = mean of v over window j. Sums in order, as PyTorch's CPU kernel.
inline void poolRow(const float* v, const std::vector<Window>& windows, float* out) {
  for (size_t j = 0; j < windows.size(); ++j) {
    float sum = 0.0f;
    for (int64_t i = windows[j].begin; i < windows[j].end; ++i) sum += v[i];
    out[j] = sum / static_cast<float>(windows[j].end - windows[j].begin);
  }
}

// [B, C, h, w] -> [B, h, w, P] on CPU: each cell's k x k zero-padded neighbourhood flattened
// channel-major (c, ky, kx), as the reference's unfold + reshape, and pooled to P adaptive
// windows, one cell at a time in a buffer that stays in L1. Materialising the unfold as a
// [B h w, C k k] tensor first made this step 4-6x slower than its memory traffic (bench/NOTES.md).
torch::Tensor neighbourhoodPoolCpu(const torch::Tensor& tap, int64_t k, int64_t P) {
  const int64_t B = tap.size(0), C = tap.size(1), h = tap.size(2), w = tap.size(3), r = k / 2;
  const int64_t F = C * k * k;
  // [B, h + 2r, w + 2r, C]: channels last, so a neighbour's C values are one contiguous run. One
  // copy from a channels-last tap (what a TorchScript backbone gives on the CPU), two from NCHW.
  auto padded = torch::constant_pad_nd(tap.to(torch::kFloat32).permute({0, 2, 3, 1}), {0, 0, r, r, r, r}).contiguous();
  auto out = torch::empty({B, h, w, P}, torch::kFloat32);
  const float* src = padded.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const int64_t hp = h + 2 * r, wp = w + 2 * r;
  const auto windows = adaptiveWindows(F, P);
  at::parallel_for(0, B * h * w, 16, [&](int64_t begin, int64_t end) {
    std::vector<float> v(F);  // one cell's neighbourhood, (c, ky, kx)
    for (int64_t cell = begin; cell < end; ++cell) {
      const int64_t b = cell / (h * w), y = (cell / w) % h, x = cell % w;
      for (int64_t ky = 0; ky < k; ++ky) {
        for (int64_t kx = 0; kx < k; ++kx) {
          const float* n = src + ((b * hp + y + ky) * wp + x + kx) * C;
          float* o = v.data() + ky * k + kx;
          for (int64_t c = 0; c < C; ++c) o[c * k * k] = n[c];
        }
      }
      poolRow(v.data(), windows, dst + cell * P);
    }
  });
  return out;
}

// The same with tensor operations, for other devices. [B, C, h, w] -> [B, h, w, P]
torch::Tensor neighbourhoodPoolTensor(const torch::Tensor& tap, int64_t k, int64_t P) {
  const int64_t B = tap.size(0), C = tap.size(1), h = tap.size(2), w = tap.size(3);
  auto u = torch::im2col(tap, {k, k}, {1, 1}, {k / 2, k / 2}, {1, 1});  // [B, C*k*k, h*w]
  auto rows = u.transpose(1, 2).reshape({B * h * w, 1, C * k * k});
  return torch::adaptive_avg_pool1d(rows, {P}).view({B, h, w, P});
}

// [N, F] -> [N, P], adaptive average pooling of every row.
torch::Tensor poolRows(const torch::Tensor& x, int64_t P, bool cpuKernel) {
  const int64_t N = x.size(0), F = x.size(1);
  if (!cpuKernel) return torch::adaptive_avg_pool1d(x.reshape({N, 1, F}), {P}).view({N, P});
  auto in = x.contiguous();
  auto out = torch::empty({N, P}, torch::kFloat32);
  const float* src = in.data_ptr<float>();
  float* dst = out.data_ptr<float>();
  const auto windows = adaptiveWindows(F, P);
  at::parallel_for(0, N, 64, [&](int64_t begin, int64_t end) {
    for (int64_t n = begin; n < end; ++n) poolRow(src + n * F, windows, dst + n * P);
  });
  return out;
}

}  // namespace

torch::Tensor patchFeatures(const std::vector<torch::Tensor>& taps, int64_t patchSize, int64_t pretrainDim,
                            int64_t targetDim, PatchGrid* grid, PatchFeaturesPath path) {
  RP_CHECK(!taps.empty(), Internal, "patchFeatures needs at least one feature map");
  RP_CHECK(patchSize % 2 == 1, Internal, "patchFeatures needs an odd patch size");
  const bool cpuKernel = path == PatchFeaturesPath::Auto && taps[0].device().is_cpu();
  const int64_t B = taps[0].size(0);
  const int64_t H = taps[0].size(2), W = taps[0].size(3);
  if (grid) *grid = PatchGrid{H, W};
  std::vector<torch::Tensor> perTap;
  perTap.reserve(taps.size());
  for (const auto& tap : taps) {
    const int64_t h = tap.size(2), w = tap.size(3);
    // Pool each cell's neighbourhood first, then resize: pooling (over c, ky, kx) and bilinear
    // resizing (over y, x) are linear on different axes, so this equals the reference's order
    // (resize the C*k*k planes, then pool) while resizing P planes instead of C*k*k.
    auto p = cpuKernel ? neighbourhoodPoolCpu(tap, patchSize, pretrainDim)
                       : neighbourhoodPoolTensor(tap, patchSize, pretrainDim);  // [B, h, w, P]
    const int64_t P = pretrainDim;
    if ((h != H || w != W) && cpuKernel) {
      p = resizeBilinearCpu(p, H, W);  // [B, H, W, P]
    } else if (h != H || w != W) {
      // Bilinear resizing is separable: two plain 2-D GEMMs (tensordot) on this layout, columns
      // (w -> W) then rows (h -> H), staying [B, rows, cols, P] with P contiguous.
      auto rx = bilinearMatrix(w, W, tap.options());                                  // [W, w]
      auto ry = bilinearMatrix(h, H, tap.options());                                  // [H, h]
      p = torch::tensordot(rx, p.reshape({B * h, w, P}), {1}, {1});                   // [W, B*h, P]
      p = p.view({W, B, h, P}).permute({1, 2, 0, 3}).reshape({B, h, W * P});          // [B, h, W*P]
      p = torch::tensordot(ry, p, {1}, {1}).permute({1, 0, 2}).reshape({B, H, W, P}); // [B, H, W, P]
    }
    perTap.push_back(p.reshape({B * H * W, P}));
  }
  auto stacked = torch::cat(perTap, 1);                     // [N, taps * P]
  return poolRows(stacked, targetDim, cpuKernel).view({B, H * W, targetDim});
}

}  // namespace rp
