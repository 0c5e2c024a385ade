#include "core/coreset.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "core/error.h"

namespace rp {

namespace {

// Squared L2 distance of one d-vector to another. Cloned for AVX2 so generic builds stay fast.
__attribute__((target_clones("arch=haswell", "default"))) float sqDist(const float* a, const float* b, int64_t d) {
  float s = 0.f;
  for (int64_t k = 0; k < d; ++k) {
    float t = a[k] - b[k];
    s += t * t;
  }
  return s;
}

struct Best {
  float value = -1.f;
  int64_t index = -1;
};

// One fused pass on the CPU: minDist = min(minDist, |x_i - c|^2), and the argmax of the result
// (lowest index on ties). One read of the projected points per selected point.
Best updateAndArgmaxCpu(const float* x, int64_t n, int64_t d, const float* c, float* minDist) {
  constexpr int64_t kGrain = 2048;
  const int64_t chunks = (n + kGrain - 1) / kGrain;
  std::vector<Best> partial(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t begin, int64_t end) {
    for (int64_t ch = begin; ch < end; ++ch) {
      Best b;
      const int64_t lo = ch * kGrain, hi = std::min(n, lo + kGrain);
      for (int64_t i = lo; i < hi; ++i) {
        float v = std::min(minDist[i], sqDist(x + i * d, c, d));
        minDist[i] = v;
        if (v > b.value) { b.value = v; b.index = i; }
      }
      partial[ch] = b;
    }
  });
  Best best;
  for (const auto& b : partial)
    if (b.value > best.value) best = b;  // chunks in index order: ties keep the lowest index
  return best;
}

}  // namespace

int64_t coresetSize(int64_t rows, double ratio) {
  return std::max<int64_t>(1, std::min<int64_t>(rows, static_cast<int64_t>(std::floor(ratio * rows))));
}

torch::Tensor coresetProjection(int64_t dim, const CoresetOptions& opts, const torch::Device& device) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed ^ 0x5eedc0de5eedULL);
  return at::normal(0.0, 1.0 / std::sqrt(static_cast<double>(opts.projectionDim)), {dim, opts.projectionDim}, gen)
      .to(torch::kFloat32)
      .to(device);
}

torch::Tensor greedyCoresetIndices(const torch::Tensor& projected, const torch::Tensor& starts, int64_t count,
                                   const ProgressFn& progress, const std::atomic<bool>* cancel) {
  // projected: [N, d]; starts: [S]
  torch::NoGradGuard noGrad;
  auto x = projected.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  // Initial distance: mean Euclidean distance to the start points (reference), kept squared below
  // so the loop compares squared distances (same order, no sqrt per point).
  auto norms = x.pow(2).sum(1, true);                    // [N, 1]
  auto s = x.index_select(0, starts.to(x.device()));     // [S, d]
  auto d2 = (norms - 2 * x.mm(s.t()) + s.pow(2).sum(1).unsqueeze(0)).clamp_min(0);  // [N, S]
  auto minDist = d2.sqrt().mean(1).pow(2).contiguous();  // [N]
  std::vector<int64_t> selected;
  selected.reserve(count);
  const int64_t every = std::max<int64_t>(1, count / 100);
  if (x.device().is_cpu()) {
    const float* xp = x.data_ptr<float>();
    float* mp = minDist.data_ptr<float>();
    int64_t next = at::argmax(minDist).item<int64_t>();
    for (int64_t it = 0; it < count; ++it) {
      if (cancel && cancel->load(std::memory_order_relaxed)) RP_FAIL(Aborted, "fit was aborted during coreset selection");
      selected.push_back(next);
      next = updateAndArgmaxCpu(xp, n, d, xp + next * d, mp).index;
      if (progress && ((it + 1) % every == 0 || it + 1 == count)) progress(it + 1, count);
    }
  } else {
    // Device-agnostic path (CUDA): the same recurrence with tensor ops.
    for (int64_t it = 0; it < count; ++it) {
      if (cancel && cancel->load(std::memory_order_relaxed)) RP_FAIL(Aborted, "fit was aborted during coreset selection");
      int64_t idx = at::argmax(minDist).item<int64_t>();
      selected.push_back(idx);
      auto c = x[idx];
      minDist = torch::minimum(minDist, (x - c).pow(2).sum(1));
      if (progress && ((it + 1) % every == 0 || it + 1 == count)) progress(it + 1, count);
    }
  }
  return torch::tensor(selected, torch::kInt64);
}

torch::Tensor approximateGreedyCoreset(const std::vector<torch::Tensor>& chunks, const CoresetOptions& opts,
                                       const ProgressFn& progress, const std::atomic<bool>* cancel) {
  torch::NoGradGuard noGrad;
  RP_CHECK(!chunks.empty(), EmptyTrainingSet, "no features to select a coreset from");
  const int64_t dim = chunks[0].size(1);
  const auto device = chunks[0].device();
  auto projection = coresetProjection(dim, opts, device);  // [D, p]
  std::vector<torch::Tensor> parts;
  int64_t rows = 0;
  for (const auto& c : chunks) {
    parts.push_back(c.to(torch::kFloat32).mm(projection));  // [n_i, p]
    rows += c.size(0);
  }
  auto projected = torch::cat(parts, 0);  // [N, p]
  parts.clear();
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  const int64_t numStarts = std::min<int64_t>(opts.numStarts, rows);
  auto starts = at::randperm(rows, gen, torch::kInt64).narrow(0, 0, numStarts);
  return greedyCoresetIndices(projected, starts, coresetSize(rows, opts.ratio), progress, cancel);
}

}  // namespace rp
