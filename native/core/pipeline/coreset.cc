#include "core/pipeline/coreset.h"

#include <ATen/Parallel.h>

#include <cmath>
#include <limits>

#include "core/error.h"
#include "core/simd.h"

namespace rp {

namespace {

// Rows of projected points are float32 or bfloat16 (the reduced-precision copy fit uses on the
// CPU). Distances are always computed in float32.
inline float toFloat(float v) { return v; }
inline float toFloat(at::BFloat16 v) { return static_cast<float>(v); }  // exact: the high 16 bits

// Squared L2 distance of a stored row to a float32 vector. Eight independent partial sums: one
// running sum is a chain of dependent float adds that the compiler may not reorder, which made
// the coreset loop compute-bound at a third of this speed (bench/NOTES.md).
template <class T>
__attribute__((always_inline)) inline float sqDistBody(const T* a, const float* b, int64_t d) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t k = 0;
  for (; k + 8 <= d; k += 8) {
    for (int j = 0; j < 8; ++j) {
      const float t = toFloat(a[k + j]) - b[k + j];
      acc[j] += t * t;
    }
  }
  float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
  for (; k < d; ++k) {
    const float t = toFloat(a[k]) - b[k];
    s += t * t;
  }
  return s;
}
RP_X86_V3_CLONES float sqDist(const float* a, const float* b, int64_t d) {
  return sqDistBody(a, b, d);
}
RP_X86_V3_CLONES float sqDist(const at::BFloat16* a, const float* b, int64_t d) {
  return sqDistBody(a, b, d);
}

template <class T>
std::vector<float> rowAsFloat(const T* x, int64_t d) {
  std::vector<float> out(d);
  for (int64_t k = 0; k < d; ++k) out[k] = toFloat(x[k]);
  return out;
}

struct Best {
  float value = -1.f;
  int64_t index = -1;
};

// One fused pass on the CPU: minDist = min(minDist, |x_i - c|^2), and the argmax of the result
// (lowest index on ties). One read of the projected points per selected point.
template <class T>
Best updateAndArgmaxCpu(const T* x, int64_t n, int64_t d, const float* c, float* minDist) {
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

// Initial distance: mean Euclidean distance to the start points (reference), kept squared so the
// loops compare squared distances (same order, no sqrt per point). x: [N, d] -> [N] float32.
// Tiles of 32,768 rows: no temporary as large as x itself (292 MiB at 600k points).
torch::Tensor initialMinDist(const torch::Tensor& x, const torch::Tensor& starts) {
  const int64_t n = x.size(0);
  auto s = x.index_select(0, starts.to(x.device())).to(torch::kFloat32);  // [S, d]
  auto startNorms = s.pow(2).sum(1).unsqueeze(0);                         // [1, S]
  auto out = torch::empty({n}, x.options().dtype(torch::kFloat32));       // [N]
  for (int64_t lo = 0; lo < n; lo += 32768) {
    auto xs = x.narrow(0, lo, std::min<int64_t>(32768, n - lo)).to(torch::kFloat32);     // [m, d]
    auto d2 = (xs.pow(2).sum(1, true) - 2 * xs.mm(s.t()) + startNorms).clamp_min(0);       // [m, S]
    out.narrow(0, lo, xs.size(0)).copy_(d2.sqrt().mean(1).pow(2));
  }
  return out;
}

// Moves row perm[k] of x [N, d] to row k, in place (one spare row): rows follow their cycles.
template <class T>
void permuteRowsInPlace(T* x, int64_t d, const std::vector<int64_t>& perm) {
  const int64_t n = static_cast<int64_t>(perm.size());
  std::vector<bool> done(n, false);
  std::vector<T> spare(d);
  for (int64_t start = 0; start < n; ++start) {
    if (done[start] || perm[start] == start) continue;
    std::copy(x + start * d, x + (start + 1) * d, spare.begin());
    int64_t j = start;
    for (;;) {
      done[j] = true;
      const int64_t from = perm[j];
      if (from == start) {
        std::copy(spare.begin(), spare.end(), x + j * d);
        break;
      }
      std::copy(x + from * d, x + (from + 1) * d, x + j * d);
      j = from;
    }
  }
}

// Calls f with the rows' data pointer, typed by the tensor's dtype (float32 or bfloat16).
template <class F>
auto withRows(const torch::Tensor& x, F&& f) {
  return x.scalar_type() == torch::kBFloat16 ? f(x.data_ptr<at::BFloat16>()) : f(x.data_ptr<float>());
}

// Anchors (blocks) of the pruned loop for n points: ~64 points per block; at most 2048 anchors
// bounds the assignment GEMMs.
int64_t pruningAnchors(int64_t n) { return std::clamp<int64_t>(n / 64, 1, 2048); }

void checkCpuRows(const torch::Tensor& x, const char* where) {
  RP_CHECK(x.device().is_cpu() && x.is_contiguous() &&
               (x.scalar_type() == torch::kFloat32 || x.scalar_type() == torch::kBFloat16),
           Internal, where << " needs a contiguous float32 or bfloat16 CPU tensor");
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
                                   const ProgressFn& progress, const std::atomic<bool>* cancel, double* radius2) {
  // projected: [N, d] (float32 or bfloat16); starts: [S]
  if (!projected.device().is_cpu()) return greedyCoresetIndicesDevice(projected, starts, count, progress, cancel, radius2);
  torch::NoGradGuard noGrad;
  auto x = projected.contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  auto minDist = initialMinDist(x, starts);  // [N]
  std::vector<int64_t> selected;
  selected.reserve(count);
  const int64_t every = std::max<int64_t>(1, count / 100);
  {
    checkCpuRows(x, "greedyCoresetIndices");
    float* mp = minDist.data_ptr<float>();
    int64_t next = at::argmax(minDist).item<int64_t>();
    withRows(x, [&](const auto* xp) {
      for (int64_t it = 0; it < count; ++it) {
        if (cancel && cancel->load(std::memory_order_relaxed)) RP_FAIL(Aborted, "fit was aborted during coreset selection");
        selected.push_back(next);
        const auto center = rowAsFloat(xp + next * d, d);
        next = updateAndArgmaxCpu(xp, n, d, center.data(), mp).index;
        if (progress && ((it + 1) % every == 0 || it + 1 == count)) progress(it + 1, count);
      }
      return 0;
    });
    if (radius2) *radius2 = mp[next];
  }
  return torch::tensor(selected, torch::kInt64);
}

torch::Tensor greedyCoresetIndicesDevice(const torch::Tensor& projected, const torch::Tensor& starts, int64_t count,
                                         const ProgressFn& progress, const std::atomic<bool>* cancel, double* radius2) {
  // projected: [N, d] (float32 or bfloat16, any device); starts: [S]
  torch::NoGradGuard noGrad;
  auto x = projected.contiguous();
  auto minDist = initialMinDist(x, starts);                                     // [N] float32
  auto selected = torch::empty({count}, minDist.options().dtype(torch::kInt64));  // [M], filled on the device
  auto next = minDist.argmax().view({1});                                       // [1], on the device
  const int64_t every = std::max<int64_t>(kDeviceSyncEvery, count / 100);
  for (int64_t it = 0; it < count; ++it) {
    if (it % kDeviceSyncEvery == 0 && cancel && cancel->load(std::memory_order_relaxed))
      RP_FAIL(Aborted, "fit was aborted during coreset selection");
    selected.narrow(0, it, 1).copy_(next);
    auto c = x.index_select(0, next).to(torch::kFloat32);  // [1, d]
    at::minimum_out(minDist, minDist, (x.to(torch::kFloat32) - c).pow(2).sum(1));
    next = minDist.argmax().view({1});
    if (progress && ((it + 1) % every == 0 || it + 1 == count)) progress(it + 1, count);
  }
  if (radius2) *radius2 = minDist.index_select(0, next).item<double>();
  return selected.to(torch::kCPU);
}

torch::Tensor greedyCoresetIndicesPruned(torch::Tensor projected, const torch::Tensor& starts, int64_t count,
                                         const ProgressFn& progress, const std::atomic<bool>* cancel, double* radius2) {
  // projected: [N, d] float32 or bfloat16 on the CPU, reordered in place; starts: [S]
  torch::NoGradGuard noGrad;
  checkCpuRows(projected, "greedyCoresetIndicesPruned");
  const int64_t n = projected.size(0), d = projected.size(1);
  auto minDistT = initialMinDist(projected, starts);  // [N], original order

  // Blocks: each point joins its nearest of A anchors, then one Lloyd step moves the anchors to
  // their blocks' means and reassigns (tighter blocks prune more; any blocks give the same
  // selection). Rows are then reordered block by block so that a block is one contiguous range.
  const int64_t A = pruningAnchors(n);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(0xb10cULL);
  auto anchors = projected.index_select(0, at::randperm(n, gen, torch::kInt64).narrow(0, 0, A)).to(torch::kFloat32).contiguous();  // [A, d]
  auto block = torch::empty({n}, torch::kInt64);
  // Tiles of 2048 rows: a [2048, A] distance tile is at most 16 MiB, small beside the fit's
  // staged features and reused by malloc (bigger tiles cost fresh pages on every tile).
  auto assign = [&] {
    auto anchorNorms = anchors.pow(2).sum(1).unsqueeze(0);  // [1, A]
    for (int64_t lo = 0; lo < n; lo += 2048) {
      auto xs = projected.narrow(0, lo, std::min<int64_t>(2048, n - lo)).to(torch::kFloat32);  // [m, d]
      auto d2 = torch::addmm(anchorNorms, xs, anchors.t(), 1, -2);          // [m, A] (+|x|^2: same argmin)
      block.narrow(0, lo, xs.size(0)).copy_(d2.argmin(1));
    }
  };
  assign();
  {
    auto counts = torch::bincount(block, {}, A).to(torch::kFloat32).unsqueeze(1);  // [A, 1]
    auto sums = torch::zeros({A, d});  // [A, d]
    for (int64_t lo = 0; lo < n; lo += 2048) {
      const int64_t m = std::min<int64_t>(2048, n - lo);
      sums.index_add_(0, block.narrow(0, lo, m), projected.narrow(0, lo, m).to(torch::kFloat32));
    }
    auto means = sums / counts.clamp_min(1);
    anchors = torch::where(counts > 0, means, anchors).contiguous();  // an empty block keeps its anchor
  }
  assign();
  auto order = std::get<1>(block.sort(/*stable=*/true, 0, false)).contiguous();  // [N]: block by block, index order within
  std::vector<int64_t> perm(order.data_ptr<int64_t>(), order.data_ptr<int64_t>() + n);
  std::vector<int64_t> selected;
  selected.reserve(count);
  withRows(projected, [&](auto* x) {
    permuteRowsInPlace(x, d, perm);
    auto minDistSorted = minDistT.index_select(0, order).contiguous();
    float* minDist = minDistSorted.data_ptr<float>();
    std::vector<int64_t> begin(A + 1, 0);
    {
      auto counts = torch::bincount(block, {}, A);
      const int64_t* c = counts.data_ptr<int64_t>();
      for (int64_t b = 0; b < A; ++b) begin[b + 1] = begin[b] + c[b];
    }
    const float* a = anchors.data_ptr<float>();
    std::vector<double> radius(A, 0.0);
    std::vector<Best> blockBest(A);  // per block: largest minDist, lowest original index on ties
    at::parallel_for(0, A, 1, [&](int64_t lo, int64_t hi) {
      for (int64_t b = lo; b < hi; ++b) {
        Best best;
        for (int64_t i = begin[b]; i < begin[b + 1]; ++i) {
          radius[b] = std::max(radius[b], std::sqrt(static_cast<double>(sqDist(x + i * d, a + b * d, d))));
          if (minDist[i] > best.value) best = {minDist[i], i};
        }
        blockBest[b] = best;
      }
    });
    // Global argmax over block maxima, ties to the lowest original index (as the plain loop).
    auto argmaxBlocks = [&] {
      Best best;
      for (int64_t b = 0; b < A; ++b) {
        const Best& c = blockBest[b];
        if (c.index < 0) continue;
        if (c.value > best.value || (c.value == best.value && perm[c.index] < perm[best.index])) best = c;
      }
      return best.index;
    };

    const int64_t every = std::max<int64_t>(1, count / 100);
    std::vector<float> center(d);
    int64_t next = argmaxBlocks();
    for (int64_t it = 0; it < count; ++it) {
      if (cancel && cancel->load(std::memory_order_relaxed)) RP_FAIL(Aborted, "fit was aborted during coreset selection");
      selected.push_back(perm[next]);
      center = rowAsFloat(x + next * d, d);
      const float* c = center.data();
      at::parallel_for(0, A, 16, [&](int64_t lo, int64_t hi) {
        for (int64_t b = lo; b < hi; ++b) {
          // Triangle inequality: every point of the block is at least |c - anchor| - radius from c.
          // If that bound (shrunk by a margin far above float rounding) exceeds the block's largest
          // minDist, no point in it can get closer: the plain loop would leave the block unchanged.
          const double dc = std::sqrt(static_cast<double>(sqDist(a + b * d, c, d)));
          const double bound = dc - radius[b] - 1e-4 * (dc + radius[b]);
          if (bound > 0 && bound * bound > static_cast<double>(blockBest[b].value) * (1 + 1e-4)) continue;
          Best best;
          for (int64_t i = begin[b]; i < begin[b + 1]; ++i) {
            float v = std::min(minDist[i], sqDist(x + i * d, c, d));  // the same arithmetic as the plain loop
            minDist[i] = v;
            if (v > best.value) best = {v, i};
          }
          blockBest[b] = best;
        }
      });
      next = argmaxBlocks();
      if (progress && ((it + 1) % every == 0 || it + 1 == count)) progress(it + 1, count);
    }
    if (radius2) *radius2 = next >= 0 ? minDist[next] : 0.0;
    return 0;
  });
  return torch::tensor(selected, torch::kInt64);
}

torch::Tensor approximateGreedyCoreset(const std::vector<torch::Tensor>& chunks, const CoresetOptions& opts,
                                       const ProgressFn& progress, const std::atomic<bool>* cancel, double* radius2,
                                       std::optional<torch::Device> on) {
  torch::NoGradGuard noGrad;
  RP_CHECK(!chunks.empty(), EmptyTrainingSet, "no features to select a coreset from");
  const int64_t dim = chunks[0].size(1);
  const auto device = on.value_or(chunks[0].device());
  auto projection = coresetProjection(dim, opts, device);  // [D, p]
  int64_t rows = 0;
  for (const auto& c : chunks) rows += c.size(0);
  // The projected points are kept in bfloat16: half the memory, at a rounding error (2^-9 per
  // coordinate) far below the random projection's own distortion. Distances are still computed in
  // float32.
  auto projected = torch::empty({rows, opts.projectionDim}, projection.options().dtype(torch::kBFloat16));  // [N, p]
  for (int64_t at = 0, i = 0; i < static_cast<int64_t>(chunks.size()); at += chunks[i].size(0), ++i) {
    projected.narrow(0, at, chunks[i].size(0)).copy_(chunks[i].to(device, torch::kFloat32).mm(projection));  // chunk by chunk
  }
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed);
  const int64_t numStarts = std::min<int64_t>(opts.numStarts, rows);
  auto starts = at::randperm(rows, gen, torch::kInt64).narrow(0, 0, numStarts);
  const int64_t count = opts.count > 0 ? std::min(opts.count, rows) : coresetSize(rows, opts.ratio);
  // The pruned loop's setup (anchors, two assignment passes) costs about as much as a few hundred
  // plain selections, which it only wins back over a long selection: run it from 2 x anchors
  // selections (the break-even measured in bench/NOTES.md).
  if (!device.is_cpu() || opts.deviceLoop) return greedyCoresetIndicesDevice(projected, starts, count, progress, cancel, radius2);
  if (count >= 2 * pruningAnchors(rows))
    return greedyCoresetIndicesPruned(std::move(projected), starts, count, progress, cancel, radius2);
  return greedyCoresetIndices(projected, starts, count, progress, cancel, radius2);
}

namespace {

// Squared distance of each row of `x` [M, p] to its nearest row of `bank` [B, p] -> [M] float32,
// in tiles so that no M x B matrix exists at once.
torch::Tensor nearestSquaredDistance(const torch::Tensor& x, const torch::Tensor& bank) {
  auto bankNorms = bank.pow(2).sum(1).unsqueeze(0);  // [1, B]
  auto out = torch::empty({x.size(0)}, x.options().dtype(torch::kFloat32));
  for (int64_t lo = 0; lo < x.size(0); lo += 2048) {
    auto xs = x.narrow(0, lo, std::min<int64_t>(2048, x.size(0) - lo));                     // [m, p]
    auto d2 = torch::addmm(bankNorms, xs, bank.t(), 1, -2) + xs.pow(2).sum(1, true);           // [m, B]
    out.narrow(0, lo, xs.size(0)).copy_(std::get<0>(d2.min(1)).clamp_min(0));
  }
  return out;
}

}  // namespace

torch::Tensor extendCoreset(const torch::Tensor& bank, const torch::Tensor& fresh, double radius2,
                            const ProgressFn& progress, const std::atomic<bool>* cancel) {
  // bank: [B, p], fresh: [M, p] float32
  torch::NoGradGuard noGrad;
  auto x = fresh.to(torch::kFloat32).contiguous();
  const int64_t n = x.size(0), d = x.size(1);
  std::vector<int64_t> selected;
  if (n == 0) return torch::empty({0}, torch::kInt64);
  auto minDist = nearestSquaredDistance(x, bank.to(x.device(), torch::kFloat32));  // [M]
  auto cancelled = [&] { return cancel && cancel->load(std::memory_order_relaxed); };
  if (x.device().is_cpu()) {
    float* mp = minDist.data_ptr<float>();
    const float* xp = x.data_ptr<float>();
    int64_t next = at::argmax(minDist).item<int64_t>();
    while (mp[next] > radius2) {
      if (cancelled()) RP_FAIL(Aborted, "update was aborted during coreset selection");
      selected.push_back(next);
      const auto center = rowAsFloat(xp + next * d, d);
      next = updateAndArgmaxCpu(xp, n, d, center.data(), mp).index;
      if (progress && selected.size() % 64 == 0) progress(static_cast<int64_t>(selected.size()), n);
    }
  } else {
    for (;;) {
      if (cancelled()) RP_FAIL(Aborted, "update was aborted during coreset selection");
      auto best = minDist.max(0);
      if (std::get<0>(best).item<double>() <= radius2) break;
      const int64_t idx = std::get<1>(best).item<int64_t>();
      selected.push_back(idx);
      minDist = torch::minimum(minDist, (x - x[idx]).pow(2).sum(1));
    }
  }
  if (progress) progress(static_cast<int64_t>(selected.size()), n);
  return torch::tensor(selected, torch::kInt64);
}

double coverageRadiusBound(const torch::Tensor& rows) {
  torch::NoGradGuard noGrad;
  auto x = rows.to(torch::kFloat32).contiguous();  // [B, p]
  const int64_t n = x.size(0);
  if (n < 2) return 0.0;
  auto norms = x.pow(2).sum(1);  // [B]
  double best = std::numeric_limits<double>::infinity();
  for (int64_t lo = 0; lo < n; lo += 2048) {
    const int64_t m = std::min<int64_t>(2048, n - lo);
    auto xs = x.narrow(0, lo, m);
    auto d2 = torch::addmm(norms.unsqueeze(0), xs, x.t(), 1, -2) + norms.narrow(0, lo, m).unsqueeze(1);  // [m, B]
    d2.diagonal(lo, 0, 1).fill_(std::numeric_limits<float>::infinity());  // not a row to itself
    best = std::min(best, d2.min().item<double>());
  }
  return std::max(0.0, best);
}

}  // namespace rp
