#include "core/engine.h"

#include <ATen/Parallel.h>

#include <mutex>
#include <thread>

#include "core/backbone.h"
#include "core/call_record.h"
#include "core/coreset.h"
#include "core/error.h"
#include "core/feature_staging.h"
#include "core/head.h"
#include "core/image.h"
#include "core/knn.h"
#include "core/memory.h"
#include "core/model_io.h"
#include "core/patch_features.h"
#include "core/scorer.h"
#include "core/torchvision_backbones.h"

namespace rp {

namespace {

// Every public entry point runs through this: libtorch's errors become typed rp::Errors with the
// message only (no C++ backtrace).
template <class Fn>
auto guarded(Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error&) {
    throw;
  } catch (const c10::Error& e) {
    throw Error(ErrorCode::Internal, e.what_without_backtrace());
  } catch (const std::bad_alloc&) {
    throw Error(ErrorCode::Internal, "out of memory");
  }
}

// Engine ids for crash reports (core/call_record.h): 1, 2, ... in creation order, per process.
std::atomic<uint64_t> nextEngineId{1};

// A short description of an engine for crash reports: backbone (file name only), head, seed.
std::string describe(const EngineOptions& o) {
  const auto slash = o.backbone.find_last_of('/');
  std::string s = slash == std::string::npos ? o.backbone : o.backbone.substr(slash + 1);
  s += o.head ? ", head" : ", no head";
  s += ", seed " + std::to_string(o.seed) + ", device " + o.device;
  return s;
}

// Images of one shape after preprocessing, embedded together.
struct EmbeddedGroup {
  std::vector<size_t> members;    // positions in the caller's image list
  std::vector<Geometry> geometry; // per member
  torch::Tensor features;         // [B, L, D]
  PatchGrid grid;
};

}  // namespace

struct Engine::Impl {
  const uint64_t id;          // for crash reports
  const std::string label;    // describe(opts)
  EngineOptions opts;
  torch::Device device;
  std::unique_ptr<Backbone> backbone;
  PreprocessOptions pre;
  mutable std::mutex mutex;
  std::atomic<bool> cancel{false};

  // Fitted state.
  std::unique_ptr<ReConPatchHead> head;  // null: PatchCore features as they are
  std::unique_ptr<FlatL2Index> bank;
  int64_t trainImages = 0, trainPatches = 0;
  std::string metadata;

  // Fit in progress (staging; swapped in by fitEnd).
  bool fitting = false;
  FeatureStaging staging{torch::kFloat32, torch::kCPU};  // [rows, D], reset by fitBegin
  int64_t stagingImages = 0;

  Impl(uint64_t id_, const EngineOptions& o, std::unique_ptr<Backbone> b)
      : id(id_), label(describe(o)), opts(o), device(resolveDevice(o.device)), backbone(std::move(b)) {
    calls::stage("backbone");
    applyThreads();
    if (!backbone) backbone = makeBackbone(opts, device);
    const auto& bi = backbone->info();
    pre.resize = opts.resize;
    pre.crop = opts.crop;
    pre.mode = opts.resizeMode;
    pre.mean = bi.mean;
    pre.std = bi.std;
  }

  // Runtime override of opts.threads (Engine::setThreads), read by worker threads. 0: none.
  std::atomic<int> threadsOverride{0};

  void applyThreads() const {
    const int want = threadsOverride.load() > 0 ? threadsOverride.load() : opts.threads;
    int n = want > 0 ? want : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    if (at::get_num_threads() != n) at::set_num_threads(n);
  }

  torch::ScalarType stagingType() const { return opts.fitPrecision == "float16" ? torch::kHalf : torch::kFloat32; }

  void checkCancel(const char* where) const {
    RP_CHECK(!cancel.load(std::memory_order_relaxed), Aborted, "fit was aborted " << where);
  }

  // Preprocess, group by input shape, run the backbone and the patch aggregation.
  std::vector<EmbeddedGroup> embed(const std::vector<RawImageView>& images) {
    torch::NoGradGuard noGrad;  // not InferenceMode: these features may feed a trained head later
    std::vector<EmbeddedGroup> groups;
    std::vector<std::vector<torch::Tensor>> inputs;
    calls::stage("preprocess");
    for (size_t i = 0; i < images.size(); ++i) {
      Geometry g;
      auto x = preprocess(images[i], pre, device, &g);  // [3, h, w]
      size_t gi = 0;
      while (gi < groups.size() && inputs[gi][0].sizes() != x.sizes()) ++gi;
      if (gi == groups.size()) {
        groups.emplace_back();
        inputs.emplace_back();
      }
      groups[gi].members.push_back(i);
      groups[gi].geometry.push_back(g);
      inputs[gi].push_back(x);
    }
    for (size_t gi = 0; gi < groups.size(); ++gi) {
      if (device.is_cpu()) {
        // One image at a time on CPU: batched convolutions and patch aggregation are no faster
        // per image here (measured, bench/NOTES.md), and per-image passes make every image's
        // features independent of what it was batched with, so batched scoring equals sequential.
        std::vector<torch::Tensor> perImage;
        for (auto& x : inputs[gi]) {
          calls::stage("backbone");
          auto taps = backbone->forward(x.unsqueeze(0));  // [1, 3, h, w] -> taps
          calls::stage("patch features");
          perImage.push_back(patchFeatures(taps, opts.patchSize, opts.pretrainDim, opts.targetDim, &groups[gi].grid));
          checkFinite(perImage.back());
          x = torch::Tensor();
        }
        groups[gi].features = torch::cat(perImage, 0);  // [B, L, D]
      } else {
        auto batch = torch::stack(inputs[gi], 0);  // [B, 3, h, w]
        inputs[gi].clear();
        calls::stage("backbone");
        auto taps = backbone->forward(batch);
        calls::stage("patch features");
        groups[gi].features = patchFeatures(taps, opts.patchSize, opts.pretrainDim, opts.targetDim, &groups[gi].grid);
        checkFinite(groups[gi].features);
      }
    }
    return groups;
  }

  // NaN or Inf features would make every distance meaningless (and the coreset find no finite
  // distance): a typed error naming the backbone instead. One pass over the features (~0.3 ms/image).
  void checkFinite(const torch::Tensor& features) const {
    RP_CHECK(torch::isfinite(features).all().item<bool>(), Backbone,
             "backbone '" << backbone->info().name << "' produced NaN or Inf values for an image; "
                          << "check the backbone (its weights, its normalisation)");
  }

  HeadOptions headOptions() const {
    HeadOptions h = opts.headOptions;
    h.seed = opts.seed;
    return h;
  }

  // Scores one embedded group into results[g.members[b]]: k-NN distances, image scores, maps.
  void scoreGroup(EmbeddedGroup& g, std::vector<ScoreResult>* results) const {
    const int64_t B = g.features.size(0), L = g.features.size(1), D = g.features.size(2);
    calls::stage("head apply");
    if (head) g.features = head->apply(g.features.reshape({B * L, D})).view({B, L, D});  // f(q)
    torch::Tensor d2, nn;
    calls::stage("knn");
    bank->search(g.features.reshape({B * L, D}), 1, &d2, &nn);
    auto patch = (opts.distance == Distance::Euclidean ? d2.sqrt() : d2).view({B, L});  // [B, L]
    calls::stage("image score");
    auto scores = opts.reweight ? reweightedImageScores(patch, nn.view({B, L}), g.features, *bank, opts.reweightNeighbors)
                                : maxImageScores(patch);  // [B]
    const auto& g0 = g.geometry[0];
    calls::stage("anomaly map");
    auto maps = anomalyMaps(patch.view({B, g.grid.height, g.grid.width}), g0.cropH, g0.cropW, opts.blurSigma);  // [B, cropH, cropW]
    auto scoresCpu = scores.to(torch::kCPU);
    for (int64_t b = 0; b < B; ++b) {
      auto m = mapToOriginal(maps[b], g.geometry[b]).to(torch::kCPU).contiguous();  // [H, W]
      auto& r = (*results)[g.members[b]];
      r.score = scoresCpu[b].item<float>();
      r.height = m.size(0);
      r.width = m.size(1);
      r.map.assign(m.data_ptr<float>(), m.data_ptr<float>() + m.numel());
    }
  }

  ModelContents contents() const {
    ModelContents m;
    m.options = opts;
    m.backboneName = backbone->info().name;
    m.backboneSha256 = backbone->info().sha256;
    (isTorchvisionArchitecture(opts.backbone) ? m.backboneWeights : m.backboneBytes) = backbone->serialized();
    m.bank = bank->rows();
    if (head) {
      m.headWeight = head->fWeight();
      m.headBias = head->fBias();
    }
    m.trainImages = trainImages;
    m.trainPatches = trainPatches;
    m.metadata = metadata;
    return m;
  }
};

Engine::Engine(const EngineOptions& options)
    : impl_(guarded([&] {
        const uint64_t id = nextEngineId++;
        calls::Scope call(id, "create", describe(options).c_str());
        return std::make_unique<Impl>(id, options, nullptr);
      })) {}
Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Engine::~Engine() {
  // Recorded: engines are destroyed by N-API finalizers, often at process exit.
  calls::Scope call(impl_->id, "destroy", impl_->label.c_str());
  impl_.reset();
}

const EngineOptions& Engine::options() const { return impl_->opts; }

EngineInfo Engine::info() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  EngineInfo i;
  i.backboneName = impl_->backbone->info().name;
  i.backboneSha256 = impl_->backbone->info().sha256;
  i.fitted = impl_->bank != nullptr;
  i.bankRows = i.fitted ? impl_->bank->ntotal() : 0;
  i.featureDim = impl_->opts.targetDim;
  i.trainImages = impl_->trainImages;
  i.trainPatches = impl_->trainPatches;
  i.device = impl_->device.str();
  return i;
}

void Engine::fitBegin() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  calls::Scope call(impl_->id, "fitBegin", impl_->label.c_str());
  impl_->cancel = false;
  impl_->fitting = true;
  impl_->staging = FeatureStaging(impl_->stagingType(), impl_->device);
  impl_->stagingImages = 0;
}

void Engine::fitAdd(const std::vector<RawImageView>& images) {
  guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    calls::Scope call(impl_->id, "fitAdd", impl_->label.c_str());
    RP_CHECK(impl_->fitting, Internal, "fitAdd called outside a fit");
    impl_->checkCancel("while embedding images");
    impl_->applyThreads();
    for (auto& g : impl_->embed(images)) {
      calls::stage("stage features");
      impl_->staging.append(g.features.reshape({-1, g.features.size(2)}));  // [B*L, D]
      impl_->stagingImages += static_cast<int64_t>(g.members.size());
    }
  });
}

void Engine::fitEnd(const StageProgressFn& progress) {
  guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto& I = *impl_;
    calls::Scope call(I.id, "fitEnd", I.label.c_str());
    RP_CHECK(I.fitting, Internal, "fitEnd called outside a fit");
    RP_CHECK(I.stagingImages > 0, EmptyTrainingSet,
             "fit received no images; pass at least one image of a good (defect-free) part");
    I.checkCancel("before coreset selection");
    I.applyThreads();
    const int64_t rows = I.staging.rows();
    std::vector<torch::Tensor> chunks = I.staging.take();  // [m_i, D], released as the bank is gathered
    // The embedding's temporaries, kept by malloc in each worker thread's arena for the next
    // image, are not needed again: give them back before the coreset's allocations.
    releaseFreedMemory();
    // ReConPatch: train f on the nominal patches, then the bank is f(p) (never g).
    std::unique_ptr<ReConPatchHead> head;
    if (I.opts.head) {
      calls::stage("head training");
      head = std::make_unique<ReConPatchHead>(I.opts.targetDim, I.headOptions(), I.device);
      head->train(chunks, [&](const HeadProgress& p) {
        calls::progress(p.iteration, p.total);
        if (progress) progress("head", p.iteration, p.total, p.loss);
      }, &I.cancel);
      calls::stage("head apply");
      for (auto& c : chunks) c = head->apply(c).to(I.stagingType());
    }
    CoresetOptions co;
    co.ratio = I.opts.coresetRatio;
    co.projectionDim = I.opts.coresetProjection;
    co.numStarts = I.opts.coresetStarts;
    co.seed = I.opts.seed;
    torch::Tensor selected;
    calls::stage("coreset");
    if (co.ratio >= 1.0) {
      selected = torch::arange(rows, torch::kInt64);
    } else {
      auto cb = [&](int64_t done, int64_t total) {
        calls::progress(done, total);
        if (progress) progress("coreset", done, total, std::nan(""));
      };
      selected = approximateGreedyCoreset(chunks, co, cb, &I.cancel);
    }
    // Gather the selected rows chunk by chunk: the staged features are never concatenated, and
    // each chunk is released once read (past this point the fit no longer needs them).
    calls::stage("gather bank");
    selected = std::get<0>(selected.sort());
    auto bank = std::make_unique<FlatL2Index>(I.opts.targetDim);
    std::vector<torch::Tensor> picked;
    int64_t offset = 0;
    for (auto& c : chunks) {
      auto lo = offset, hi = offset + c.size(0);
      auto mask = (selected >= lo).logical_and(selected < hi);
      auto local = selected.masked_select(mask) - lo;
      if (local.numel() > 0) picked.push_back(c.index_select(0, local.to(c.device())).to(torch::kFloat32));
      offset = hi;
      c = torch::Tensor();
    }
    bank->add(torch::cat(picked, 0));
    I.bank = std::move(bank);
    I.head = std::move(head);
    I.trainImages = I.stagingImages;
    I.trainPatches = rows;
    I.stagingImages = 0;
    I.fitting = false;
    releaseFreedMemory();  // the staged features' blocks, kept by malloc for reuse
  });
}

void Engine::fitAbort() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  calls::Scope call(impl_->id, "fitAbort", impl_->label.c_str());
  impl_->staging.clear();
  impl_->stagingImages = 0;
  impl_->fitting = false;
  releaseFreedMemory();
}

void Engine::requestCancel() { impl_->cancel = true; }

std::vector<ScoreResult> Engine::score(const std::vector<RawImageView>& images) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto& I = *impl_;
    calls::Scope call(I.id, "score", I.label.c_str());
    RP_CHECK(I.bank != nullptr, NotFitted, "the engine is not fitted; call fit() with good images or load() a model first");
    I.applyThreads();
    torch::NoGradGuard noGrad;
    std::vector<ScoreResult> results(images.size());
    if (I.device.is_cpu()) {
      // Image by image on CPU: no faster batched here (bench/NOTES.md), and it makes each result
      // independent of its batch-mates (GEMM rounding depends on the row count), so batched
      // scoring returns exactly what sequential calls return.
      for (size_t i = 0; i < images.size(); ++i) {
        calls::item(static_cast<int64_t>(i) + 1, static_cast<int64_t>(images.size()));
        for (auto& g : I.embed({images[i]})) {
          g.members[0] = i;
          I.scoreGroup(g, &results);
        }
      }
    } else {
      for (auto& g : I.embed(images)) I.scoreGroup(g, &results);
    }
    return results;
  });
}

void Engine::setThreads(int threads) { impl_->threadsOverride.store(threads); }

void Engine::setMetadata(const std::string& metadata) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->metadata = metadata;
}

std::string Engine::metadata() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->metadata;
}

void Engine::validate(const std::vector<RawImageView>& images) const {
  for (const auto& image : images) planGeometry(image, impl_->pre);
}

void Engine::save(const std::string& path) {
  guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    calls::Scope call(impl_->id, "save", impl_->label.c_str());
    calls::stage("write");
    RP_CHECK(impl_->bank != nullptr, NotFitted, "cannot save an engine that is not fitted; call fit() first");
    writeModelFile(path, impl_->contents());
  });
}

std::unique_ptr<Engine> Engine::load(const std::string& path) {
  return guarded([&] {
    const uint64_t id = nextEngineId++;
    const auto slash = path.find_last_of('/');
    calls::Scope call(id, "load", (slash == std::string::npos ? path : path.substr(slash + 1)).c_str());
    calls::stage("read");
    ModelContents m = readModelFile(path);
    calls::stage("backbone");
    auto device = resolveDevice(m.options.device);
    std::unique_ptr<Backbone> backbone;
    if (!m.backboneBytes.empty()) {
      backbone = loadTorchScriptBackbone(std::move(m.backboneBytes), m.backboneName, device);
    } else if (isTorchvisionArchitecture(m.options.backbone)) {
      // The truncated weights travel in the model file: no weights cache needed to load it.
      RP_CHECK(!m.backboneWeights.empty(), ModelFile,
               "model file '" << path << "' names backbone '" << m.options.backbone << "' but does not contain its weights");
      backbone = makeTorchvisionBackbone(m.options.backbone, torchvisionTaps(m.options.backbone, m.options.layers),
                                         m.backboneWeights, path, device);
    } else {
      RP_CHECK(isBuiltinBackbone(m.options.backbone), ModelFile,
               "model file '" << path << "' names backbone '" << m.options.backbone << "' but does not contain it");
      backbone = makeBackbone(m.options, device);
    }
    RP_CHECK(backbone->info().sha256 == m.backboneSha256, ModelFile,
             "model file '" << path << "': backbone '" << m.backboneName << "' does not match the one it was fitted with");
    auto impl = std::make_unique<Impl>(id, m.options, std::move(backbone));
    calls::stage("bank");
    impl->bank = std::make_unique<FlatL2Index>(m.options.targetDim);
    impl->bank->add(m.bank.to(impl->device));
    if (m.options.head) impl->head = std::make_unique<ReConPatchHead>(m.headWeight.to(impl->device), m.headBias.to(impl->device));
    impl->trainImages = m.trainImages;
    impl->trainPatches = m.trainPatches;
    impl->metadata = m.metadata;
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
  });
}

std::vector<float> Engine::embed(const RawImageView& image, int64_t* rows, int64_t* dim) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    calls::Scope call(impl_->id, "embed", impl_->label.c_str());
    impl_->applyThreads();
    auto groups = impl_->embed({image});
    auto f = groups[0].features[0].to(torch::kCPU).contiguous();  // [L, D]
    *rows = f.size(0);
    *dim = f.size(1);
    return std::vector<float>(f.data_ptr<float>(), f.data_ptr<float>() + f.numel());
  });
}

}  // namespace rp
