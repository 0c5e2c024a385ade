// Timed kernels for the benchmarks (bench/): the machine's GEMM rate and read bandwidth, the k-NN
// and the backbone, each best-of-reps. The pipeline steps for tests are in internals.cc.
#include "probes/bench_kernels.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <vector>

#include "core/backbones/backbone.h"
#include "core/pipeline/flat_l2_index.h"
#include "core/pipeline/knn_int8.h"
#include "core/pipeline/patch_features.h"
#include "core/simd.h"
#include "probes/tensor_arrays.h"

namespace rp::internals {

double gemmGflops(int64_t n, int reps, int threads) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    auto a = torch::randn({n, n}), b = torch::randn({n, n}), c = torch::empty({n, n});
    torch::mm_out(c, a, b);  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      torch::mm_out(c, a, b);
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    return 2.0 * n * n * n / best / 1e9;
  });
}

namespace {
// Sum with 16 independent accumulators: little enough arithmetic per byte that the loop is bound
// by reading (torch's sum, a cascade sum, is not: it reads 32 MiB from L3 slower than this reads DRAM).
RP_X86_V3_CLONES float streamSum(const float* p, int64_t n) {
  float acc[16] = {};
  for (int64_t i = 0; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) acc[j] += p[i + j];
  float s = 0;
  for (float a : acc) s += a;
  return s;
}
}  // namespace

double readGBs(int64_t bytes, int reps, int threads) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    const int64_t n = bytes / 4 / 16 * 16, grain = 1 << 20;
    auto x = torch::ones({n});  // written once, so every page is resident before timing
    const float* p = x.data_ptr<float>();
    std::vector<float> partial(static_cast<size_t>((n + grain - 1) / grain));
    auto pass = [&] {
      at::parallel_for(0, n / grain + (n % grain ? 1 : 0), 1, [&](int64_t b, int64_t e) {
        for (int64_t c = b; c < e; ++c) partial[c] = streamSum(p + c * grain, std::min(grain, n - c * grain));
      });
    };
    pass();  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      pass();
      best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
    double total = 0;
    for (float v : partial) total += v;
    RP_CHECK(total == static_cast<double>(n), Internal, "read bandwidth: the sum is " << total << ", not " << n);
    return static_cast<double>(n) * 4 / best / 1e9;
  });
}

KnnComparison knnCompare(const FloatArray* bank, const FloatArray* queries, int64_t bankRows, int64_t queryRows,
                         int64_t dim, int reps, int threads) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    auto gen = at::make_generator<at::CPUGeneratorImpl>(6);
    auto b = bank ? toTensor(*bank) : at::empty({bankRows, dim}).normal_(0, 1, gen);
    auto q = queries ? toTensor(*queries) : at::empty({queryRows, dim}).normal_(0, 1, gen);
    FlatL2Index f32(b.size(1), 4096, 1024, KnnKernel::Float32), i8(b.size(1), 4096, 1024, KnnKernel::Int8);
    f32.add(b);
    i8.add(b);
    KnnComparison out;
    out.queries = q.size(0);
    out.bankRows = b.size(0);
    out.int8 = i8.usesInt8();
    torch::Tensor fd, fi, id, ii;
    auto timed = [&](const FlatL2Index& index, torch::Tensor* d, torch::Tensor* i) {
      index.search(q, 1, d, i);  // warm-up
      double best = 1e30;
      for (int r = 0; r < reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        index.search(q, 1, d, i);
        best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      }
      return best;
    };
    // Alternating, so that both see the same machine state.
    out.float32Ms = timed(f32, &fd, &fi);
    resetKnnInt8Counters();
    out.int8Ms = timed(i8, &id, &ii);
    const auto c = knnInt8Counters();
    out.rescoredPerQuery = c.queries > 0 ? static_cast<double>(c.rescored) / c.queries : 0;
    out.fallbackQueries = c.queries > 0 ? c.fallbackQueries * out.queries / c.queries : 0;  // per search
    out.sameIndex = fi.eq(ii).sum().item<int64_t>();
    out.maxRelativeGap = ((id - fd).abs() / fd.clamp_min(1e-30)).max().item<double>();
    return out;
  });
}

double knnMilliseconds(int64_t bankRows, int64_t queries, int64_t dim, int reps, int threads) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    FlatL2Index index(dim);
    index.add(torch::randn({bankRows, dim}));
    auto q = torch::randn({queries, dim});
    torch::Tensor d, i;
    index.search(q, 1, &d, &i);  // warm-up
    double best = 1e30;
    for (int r = 0; r < reps; ++r) {
      auto t0 = std::chrono::steady_clock::now();
      index.search(q, 1, &d, &i);
      best = std::min(best, std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    }
    return best;
  });
}

BackboneTiming backboneMilliseconds(const std::string& nameOrPath, int64_t size, int64_t batch, int reps, int threads) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    torch::NoGradGuard noGrad;
    EngineOptions o;
    o.backbone = nameOrPath;
    auto backbone = makeBackbone(o, torch::kCPU);
    auto x = torch::rand({batch, 3, size, size});
    BackboneTiming best{1e30, 1e30};
    for (int r = 0; r <= reps; ++r) {  // the first run warms up
      auto t0 = std::chrono::steady_clock::now();
      auto taps = backbone->forward(x);
      auto t1 = std::chrono::steady_clock::now();
      rp::patchFeatures(taps, 3, 1024, 1024);
      auto t2 = std::chrono::steady_clock::now();
      if (r == 0) continue;
      best.backboneMs = std::min(best.backboneMs, std::chrono::duration<double, std::milli>(t1 - t0).count());
      best.patchFeaturesMs = std::min(best.patchFeaturesMs, std::chrono::duration<double, std::milli>(t2 - t1).count());
    }
    return best;
  });
}

}  // namespace rp::internals
