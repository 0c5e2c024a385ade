#include "probes/internals.h"

#include <ATen/Parallel.h>

#include <chrono>
#include <vector>

#include "core/backbones/backbone.h"
#include "core/pipeline/coreset.h"
#include "core/error.h"
#include "core/guarded.h"
#include "core/pipeline/head.h"
#include "core/pipeline/image.h"
#include "core/pipeline/flat_l2_index.h"
#include "core/pipeline/patch_features.h"
#include "core/pipeline/scorer.h"
#include "core/simd.h"
#include "core/backbones/torchvision.h"

namespace rp::internals {

namespace {

torch::Tensor toTensor(const FloatArray& a) {
  int64_t n = 1;
  for (auto d : a.shape) n *= d;
  RP_CHECK(n == static_cast<int64_t>(a.data.size()), InvalidOption,
           "array has " << a.data.size() << " values but its shape needs " << n);
  return torch::from_blob(const_cast<float*>(a.data.data()), a.shape, torch::kFloat32).clone();
}

FloatArray fromTensor(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kFloat32).contiguous();
  FloatArray a;
  a.shape = c.sizes().vec();
  a.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return a;
}

// One pipeline step, without autograd, through the core's exception boundary.
template <class Fn>
auto step(Fn&& fn) -> decltype(fn()) {
  return guarded([&] {
    torch::NoGradGuard noGrad;
    return fn();
  });
}

}  // namespace

FloatArray patchFeatures(const std::vector<FloatArray>& taps, int64_t patchSize, int64_t pretrainDim,
                         int64_t targetDim, bool tensorOps) {
  return step([&] {
    std::vector<torch::Tensor> t;
    for (const auto& a : taps) t.push_back(toTensor(a));
    auto path = tensorOps ? PatchFeaturesPath::Tensor : PatchFeaturesPath::Auto;
    return fromTensor(rp::patchFeatures(t, patchSize, pretrainDim, targetDim, nullptr, path)[0]);
  });
}

FloatArray preprocess(const RawImageView& image, int64_t resize, int64_t crop, ResizeMode mode) {
  return step([&] {
    PreprocessOptions o;
    o.resize = resize;
    o.crop = crop;
    o.mode = mode;
    return fromTensor(rp::preprocess(image, o, torch::kCPU));
  });
}

std::vector<int64_t> greedyCoreset(const FloatArray& projected, const std::vector<int64_t>& starts, int64_t count,
                                   bool pruned, int threads, bool bfloat16, bool deviceLoop) {
  return step([&] {
    if (threads > 0) at::set_num_threads(threads);
    auto x = toTensor(projected);
    if (bfloat16) x = x.to(torch::kBFloat16);
    auto s = torch::tensor(starts, torch::kInt64);
    auto idx = deviceLoop ? greedyCoresetIndicesDevice(x, s, count)
               : pruned   ? greedyCoresetIndicesPruned(x, s, count)
                          : greedyCoresetIndices(x, s, count);
    return std::vector<int64_t>(idx.data_ptr<int64_t>(), idx.data_ptr<int64_t>() + idx.numel());
  });
}

FloatArray knn(const FloatArray& bank, const FloatArray& queries, int64_t k, std::vector<int64_t>* indices,
               const std::string& kernel, int64_t excludeBegin, int64_t excludeEnd) {
  return step([&] {
    RP_CHECK(kernel == "auto" || kernel == "float32" || kernel == "int8", InvalidOption, "unknown k-NN kernel '" << kernel << "'");
    const auto which = kernel == "float32" ? KnnKernel::Float32 : kernel == "int8" ? KnnKernel::Int8 : KnnKernel::Auto;
    FlatL2Index index(bank.shape.at(1), /*chunkRows=*/64, /*queryRows=*/1024, which);  // small chunks: exercises the merge
    index.add(toTensor(bank));
    torch::Tensor d, i;
    index.search(toTensor(queries), k, &d, &i, RowRange{excludeBegin, excludeEnd});
    indices->assign(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel());
    return fromTensor(d);
  });
}

FloatArray gaussianBlur(const FloatArray& map, double sigma) {
  return step([&] { return fromTensor(rp::gaussianBlur(toTensor(map).unsqueeze(0), sigma)[0]); });
}

FloatArray anomalyMap(const FloatArray& grid, int64_t outH, int64_t outW, double sigma) {
  return step([&] { return fromTensor(anomalyMaps(toTensor(grid).unsqueeze(0), outH, outW, sigma)[0]); });
}

float reweightedScore(const FloatArray& bank, const FloatArray& queries, int64_t neighbours) {
  return step([&] {
    FlatL2Index index(bank.shape.at(1));
    index.add(toTensor(bank));
    auto q = toTensor(queries);  // [L, D]
    torch::Tensor d, i;
    index.search(q, 1, &d, &i);
    auto patch = d.sqrt().view({1, -1});
    return reweightedImageScores(patch, i.view({1, -1}), q.unsqueeze(0), index, neighbours).item<float>();
  });
}

HeadSimilarities headSimilarities(const FloatArray& z, int64_t k, double sigma) {
  return step([&] {
    auto d2 = pairwiseSquaredDistances(toTensor(z));
    return HeadSimilarities{fromTensor(knnMatrix(d2, k)), fromTensor(contextualSimilarity(d2, k)),
                            fromTensor(contextualSimilarityDense(d2, k)), fromTensor(pairwiseSimilarity(d2, sigma)),
                            kthNeighbourBandwidth(d2, k).item<double>()};
  });
}

float headLoss(const FloatArray& z, const FloatArray& w, double margin, FloatArray* grad, bool reference) {
  return guarded([&] {  // with autograd: the gradient is what is tested
    auto zt = toTensor(z).set_requires_grad(true);
    auto loss = reference ? relaxedContrastiveLossAutograd(zt, toTensor(w), margin)
                          : relaxedContrastiveLoss(zt, toTensor(w), margin);
    loss.backward();
    *grad = fromTensor(zt.grad());
    return loss.item<float>();
  });
}

HeadTraining headTraining(int64_t batch, int64_t dim, int64_t iterations, bool reference, int threads,
                          int64_t lossReadEvery) {
  return guarded([&] {
    if (threads > 0) at::set_num_threads(threads);
    torch::AutoGradMode enableGrad(true);  // training needs autograd wherever this is called from
    auto gen = at::make_generator<at::CPUGeneratorImpl>(21);
    std::vector<torch::Tensor> chunks = {at::empty({4 * batch, dim}).uniform_(0, 1, gen)};
    HeadOptions o;
    o.iterations = iterations;
    o.batch = batch;
    o.denseReference = reference;
    if (lossReadEvery > 0) o.lossReadEvery = lossReadEvery;
    ReConPatchHead head(dim, o, torch::kCPU);
    HeadTraining out;
    auto t0 = std::chrono::steady_clock::now();
    head.train(chunks, [&](const HeadProgress& p) { out.losses.push_back(p.loss); }, nullptr);
    out.msPerIteration =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / std::max<int64_t>(1, iterations);
    out.fWeight = fromTensor(head.fWeight());
    out.fBias = fromTensor(head.fBias());
    return out;
  });
}

FloatArray emaStep(const FloatArray& partner, const FloatArray& current, double ema) {
  return step([&] {
    std::vector<torch::Tensor> p = {toTensor(partner)};
    ReConPatchHead::emaUpdate(p, {toTensor(current)}, ema);
    return fromTensor(p[0]);
  });
}

std::vector<FloatArray> torchvisionTaps(const std::string& arch, const std::string& weightsPath,
                                        const std::string& layers, const FloatArray& input,
                                        std::vector<int64_t>* strides, std::vector<int64_t>* channels) {
  return step([&] {
    EngineOptions o;
    o.backbone = arch;
    o.weights = weightsPath;
    o.layers = layers;
    RP_CHECK(isTorchvisionArchitecture(arch), InvalidOption, "'" << arch << "' is not a torchvision architecture");
    auto backbone = makeBackbone(o, torch::kCPU);
    *strides = backbone->info().strides;
    *channels = backbone->info().channels;
    std::vector<FloatArray> out;
    for (const auto& t : backbone->forward(toTensor(input))) out.push_back(fromTensor(t));
    return out;
  });
}

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

KnnInt8State knnInt8State() { return {knnInt8Supported(), knnInt8Enabled()}; }
void setKnnInt8Enabled(bool enabled) { rp::setKnnInt8Enabled(enabled); }

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

FloatArray coresetProject(const FloatArray& features, int64_t projectionDim, uint64_t seed) {
  return step([&] {
    auto f = toTensor(features);  // [n, D]
    CoresetOptions o;
    o.projectionDim = projectionDim;
    o.seed = seed;
    return fromTensor(f.mm(coresetProjection(f.size(1), o, torch::kCPU)));  // [n, p]
  });
}

}  // namespace rp::internals
