// Single pipeline steps for tests, tensor-free (internals.h). Timed kernels: bench_kernels.cc.
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
#include "core/pipeline/tiles.h"
#include "core/backbones/torchvision.h"
#include "probes/tensor_arrays.h"

namespace rp::internals {

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
               const std::string& kernel, int64_t excludeBegin, int64_t excludeEnd, int64_t* int8Queries) {
  return step([&] {
    RP_CHECK(kernel == "auto" || kernel == "float32" || kernel == "int8", InvalidOption, "unknown k-NN kernel '" << kernel << "'");
    const auto which = kernel == "float32" ? KnnKernel::Float32 : kernel == "int8" ? KnnKernel::Int8 : KnnKernel::Auto;
    FlatL2Index index(bank.shape.at(1), /*chunkRows=*/64, /*queryRows=*/1024, which);  // small chunks: exercises the merge
    index.add(toTensor(bank));
    torch::Tensor d, i;
    const int64_t before = knnInt8Counters().queries;
    index.search(toTensor(queries), k, &d, &i, RowRange{excludeBegin, excludeEnd});
    *int8Queries = knnInt8Counters().queries - before;
    indices->assign(i.data_ptr<int64_t>(), i.data_ptr<int64_t>() + i.numel());
    return fromTensor(d);
  });
}

FloatArray gaussianBlur(const FloatArray& map, double sigma) {
  return step([&] { return fromTensor(rp::gaussianBlur(toTensor(map).unsqueeze(0), sigma)[0]); });
}

FloatArray gaussianBlurForm(const FloatArray& map, double sigma, bool tensorForm) {
  return step([&] { return fromTensor(rp::gaussianBlur(toTensor(map).unsqueeze(0), sigma, tensorForm)[0]); });
}

FloatArray mapToOriginal(const FloatArray& map, const std::vector<int64_t>& geometry, bool tensorForm) {
  return step([&] {
    RP_CHECK(geometry.size() == 6 && map.shape.size() == 2, Internal, "mapToOriginal: map [h, w], geometry of 6 numbers");
    Geometry g;
    g.origH = geometry[0], g.origW = geometry[1], g.resizedH = geometry[2], g.resizedW = geometry[3];
    g.top = geometry[4], g.left = geometry[5], g.cropH = map.shape[0], g.cropW = map.shape[1];
    return fromTensor(rp::mapToOriginal(toTensor(map), g, tensorForm));
  });
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
                          int64_t lossReadEvery, double plateau) {
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
    o.plateau = plateau;
    ReConPatchHead head(dim, o, torch::kCPU);
    HeadTraining out;
    auto t0 = std::chrono::steady_clock::now();
    const int64_t ran = head.train(chunks, [&](const HeadProgress& p) { out.losses.push_back(p.loss); }, nullptr);
    out.msPerIteration =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count() / std::max<int64_t>(1, ran);
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

KnnInt8State knnInt8State() { return {knnInt8Supported(), knnInt8Enabled()}; }
void setKnnInt8Enabled(bool enabled) { rp::setKnnInt8Enabled(enabled); }

std::string backbonePasses(const std::string& path) {
  return guarded([&] {
    EngineOptions o;
    o.backbone = path;
    return makeBackbone(o, torch::kCPU)->info().graphPasses;
  });
}

std::vector<int64_t> tilePlan(int64_t length, int64_t tile, int64_t overlap, int64_t align, int64_t cell) {
  return guarded([&] {
    const auto spans = planTileSpans(length, tile, overlap, align);
    std::vector<int64_t> offsets, counts;
    for (const auto& s : spans) {
      offsets.push_back(s.origin / cell);
      counts.push_back((s.size + cell - 1) / cell);
    }
    const auto kept = keptTileCells(offsets, counts);
    std::vector<int64_t> out;
    for (size_t i = 0; i < spans.size(); ++i) out.insert(out.end(), {spans[i].origin, spans[i].size, kept[i].from, kept[i].to});
    return out;
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
