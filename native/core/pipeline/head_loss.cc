// The relaxed contrastive loss on the CPU with a hand-written gradient (head.h).
//
// The tensor form (relaxedContrastiveLossAutograd) runs ~15 element-wise passes over N x N
// forward and about twice that backward, each a fresh 4 MiB tensor on OpenMP threads between
// OpenBLAS GEMMs, and its backward takes two N x N x d products for z z^T. Here one pass per row
// gives the loss and s_ij = dL / d d2_ij, and the backward is one product:
//   d2_ij = n_i + n_j - 2 z_i.z_j  =>  dL/dz_a = 2 sum_j G_aj (z_a - z_j),  G = S + S^T,
// where the diagonal drops out exactly (d2_ii does not depend on z), so G_ii is set to 0 rather
// than left to cancel in rounding as autograd's two paths do.
#include <cmath>
#include <cstring>

#include "core/pipeline/head.h"
#include "core/simd.h"

namespace rp {
namespace {

// One row i: raw_j = (n_i - 2 gram_ij) + n_j as the tensor form rounds it, then with
// dist_j = sqrt(max(raw_j, 0) + 1e-9), mu = mean_j dist_j, delta_j = dist_j / mu:
//   loss_i = sum_j w_j delta_j^2 + (1 - w_j) relu(m - delta_j)^2            (returned)
//   g_j    = dL/d delta_j = (2 w_j delta_j - 2 (1 - w_j) relu(m - delta_j)) / N
//   dL/d dist_j = (g_j - (1/N) sum_n g_n delta_n) / mu                    (mu depends on the row)
//   s_j    = dL/d raw_j = dL/d dist_j / (2 dist_j), 0 where the clamp at 0 cut (raw_j < 0)
// Sums in kLanes partial sums so that the loops vectorise. scratch: [2N]; s: [N] out.
// s_j is also 0 where z_j equals z_i (i itself, and duplicates, which sampling with replacement
// draws every few iterations): their d2 is 0 whatever z does, so they add nothing to the gradient,
// but near d2 = 0 s_j is ~1/(2 sqrt(1e-9)) and r z - G z would leave that times rounding.
constexpr int kLanes = 16;

// Column j of a row: adds its loss and g_j delta_j to the given sums, stores g_j.
inline __attribute__((always_inline)) void lossTerm(const float* dist, const float* w, float* g, int64_t j, float mu,
                                                    float margin, float invN, float* loss, float* gDelta) {
  const float delta = dist[j] / mu;
  const float gap = margin - delta > 0.f ? margin - delta : 0.f;
  *loss += w[j] * (delta * delta) + (1.f - w[j]) * (gap * gap);
  g[j] = (2.f * w[j] * delta - 2.f * (1.f - w[j]) * gap) * invN;
  *gDelta += g[j] * delta;
}

RP_X86_V3_CLONES double lossRow(const float* gram, const float* n, int64_t i, const float* w, int64_t N,
                                float margin, const float* z, int64_t d, float* scratch, float* s) {
  float* dist = scratch;
  float* g = scratch + N;
  float acc[kLanes] = {};
  for (int64_t j = 0; j < N; ++j) {
    const float raw = (n[i] - 2.f * gram[j]) + n[j];
    s[j] = raw;  // kept for the clamp's mask
    dist[j] = std::sqrt((raw > 0.f ? raw : 0.f) + 1e-9f);
  }
  int64_t j = 0;
  for (; j + kLanes <= N; j += kLanes)
    for (int l = 0; l < kLanes; ++l) acc[l] += dist[j + l];
  for (; j < N; ++j) acc[0] += dist[j];
  double sum = 0;
  for (float a : acc) sum += a;
  const float mu = static_cast<float>(sum / static_cast<double>(N));
  const float invN = 1.f / static_cast<float>(N);
  float lossAcc[kLanes] = {}, gdAcc[kLanes] = {};
  for (j = 0; j + kLanes <= N; j += kLanes)
    for (int l = 0; l < kLanes; ++l) lossTerm(dist, w, g, j + l, mu, margin, invN, &lossAcc[l], &gdAcc[l]);
  for (; j < N; ++j) lossTerm(dist, w, g, j, mu, margin, invN, &lossAcc[0], &gdAcc[0]);
  double loss = 0, gDelta = 0;
  for (int l = 0; l < kLanes; ++l) {
    loss += lossAcc[l];
    gDelta += gdAcc[l];
  }
  const float shift = static_cast<float>(gDelta) * invN;
  for (j = 0; j < N; ++j) {
    const float raw = s[j];
    s[j] = raw >= 0.f ? (g[j] - shift) / mu / (2.f * dist[j]) : 0.f;
    dist[j] = raw;
  }
  // Equal rows give d2 at rounding level: compare them only then.
  for (j = 0; j < N; ++j)
    if (dist[j] <= 1e-3f * (n[i] + n[j]) && std::memcmp(z + i * d, z + j * d, sizeof(float) * d) == 0) s[j] = 0.f;
  return loss;
}

class RelaxedContrastiveFn : public torch::autograd::Function<RelaxedContrastiveFn> {
 public:
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& z, const torch::Tensor& w,
                               double margin) {
    auto zc = z.contiguous();
    const int64_t N = zc.size(0);
    auto n = zc.pow(2).sum(1).contiguous();        // [N], as pairwiseSquaredDistances
    auto gram = gramMatrix(zc).contiguous();         // [N, N]
    auto wc = w.to(torch::kFloat32).contiguous();
    auto S = torch::empty({N, N});                 // [N, N] dL / d d2
    std::vector<float> scratch(static_cast<size_t>(2 * N));
    const float* g = gram.data_ptr<float>();
    const float* np = n.data_ptr<float>();
    const float* wp = wc.data_ptr<float>();
    float* sp = S.data_ptr<float>();
    double total = 0;
    // On the calling thread: between GEMMs, OpenMP workers contend with OpenBLAS's spinning
    // ones on small machines (bench/NOTES.md, k-NN); one row is ~1k elements.
    for (int64_t i = 0; i < N; ++i)
      total += lossRow(g + i * N, np, i, wp + i * N, N, static_cast<float>(margin), zc.data_ptr<float>(), zc.size(1),
                       scratch.data(), sp + i * N);
    ctx->save_for_backward({zc, S});
    return torch::tensor(static_cast<float>(total / static_cast<double>(N)));
  }

  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto& z = saved[0];
    auto G = saved[1] + saved[1].t();  // [N, N] symmetric, G_ii = 0
    auto r = G.sum(1, true);  // [N, 1]
    auto dz = torch::addmm(z * r, G, z, /*beta=*/1, /*alpha=*/-1).mul_(grads[0] * 2);  // 2 (r z - G z)
    return {dz, torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor relaxedContrastiveLoss(const torch::Tensor& z, const torch::Tensor& w, double margin) {
  if (!z.device().is_cpu() || z.scalar_type() != torch::kFloat32) return relaxedContrastiveLossAutograd(z, w, margin);
  return RelaxedContrastiveFn::apply(z, w, margin);
}

}  // namespace rp
