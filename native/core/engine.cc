// The engine's orchestration: its state (Impl: options, backbone, live and pending models, the
// fit's staging) and every entry point that locks it. Longer than ~400 lines on purpose: the
// fit transaction's states (staging, pending, live), the locks and the call records are read in
// one place; each computation is a step in pipeline/ (features, coreset, head, k-NN, scores).
#include "core/engine.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <mutex>
#include <thread>

#include "core/backbones/backbone.h"
#include "core/call_record.h"
#include "core/pipeline/coreset.h"
#include "core/device_context.h"
#include "core/error.h"
#include "core/guarded.h"
#include "core/pipeline/feature_staging.h"
#include "core/pipeline/head.h"
#include "core/pipeline/image.h"
#include "core/pipeline/tiles.h"
#include "core/pipeline/flat_l2_index.h"
#include "core/memory.h"
#include "core/io/model_file.h"
#include "core/io/staged_file.h"
#include "core/pipeline/patch_features.h"
#include "core/pipeline/scorer.h"

namespace rp {

namespace {

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

// A fitted model: what scoring needs, and what the model file keeps.
struct FittedModel {
  std::shared_ptr<const ReConPatchHead> head;  // null: PatchCore features as they are
  std::unique_ptr<FlatL2Index> bank;
  int64_t trainImages = 0, trainPatches = 0;
  // The squared coverage radius the coreset stopped at (projected space): update() adds new
  // patches farther than this from the bank. < 0: unknown (older model files), estimated on use.
  double coresetRadius2 = -1;
  int64_t updates = 0, updateRows = 0;
};

struct Engine::Impl {
  const uint64_t id;        // for crash reports
  const std::string label;  // describe(opts)
  EngineOptions opts;
  torch::Device device;
  std::unique_ptr<Backbone> backbone;
  EngineStream stream;  // this engine's own CUDA stream (nothing on the CPU)
  PreprocessOptions pre;
  mutable std::mutex mutex;  // held by every call that computes (a fit holds it for minutes)
  std::atomic<bool> cancel{false};

  std::unique_ptr<FittedModel> live;     // null until a fit is committed or a model is loaded
  std::unique_ptr<FittedModel> pending;  // built by fitEnd, made live by fitCommit
  std::string metadata;

  // What info() returns, replaced on every commit and load under its own lock, so that reading
  // it never waits for `mutex`.
  mutable std::mutex infoMutex;
  EngineInfo snapshot;

  // Fit in progress (staging; the pending model is built from it).
  bool fitting = false;
  FitMode fitMode = FitMode::Fit;
  int64_t stagingBudget = 0;   // maxStagedPatches (0: none)
  int64_t stagingPatches = 0;  // patches embedded in this fit, also those reduced away
  // [rows, D], reset by fitBegin. Always in host memory, on any device: a GPU holds only what it
  // computes on (a batch of features for the head, the projected points, the bank), so a fit's
  // staged features are bounded by host memory, not by the GPU's.
  FeatureStaging staging{torch::kFloat32, torch::kCPU};
  int64_t stagingImages = 0;
  // Where each staged image's rows are (images of one shape are embedded together, so staging
  // order can differ from input order within a batch), for leave-one-image-out calibration.
  struct StagedImage {
    int64_t input, rowStart, rows, gridH, gridW, cropH, cropW;
  };
  std::vector<StagedImage> stagedImages;
  std::vector<LeaveOutResult> leaveOut;  // the last fitEnd's, for the caller's calibration

  // The CPU's own paths (per-image scoring, the fused kernels, the CPU coreset loops); false on
  // other devices, and on the CPU when RECONPATCH_GPU_PATHS is set: a test hook that runs the
  // GPU-shaped code (batched scoring, tensor-op kernels, the device coreset loop) on the CPU.
  bool hostPaths = true;

  Impl(uint64_t id_, const EngineOptions& o, std::unique_ptr<Backbone> b)
      : id(id_), label(describe(o)), opts(o), device(resolveDevice(o.device)), backbone(std::move(b)), stream(device) {
    calls::stage("backbone");
    hostPaths = device.is_cpu() && !std::getenv("RECONPATCH_GPU_PATHS");
    // k-NN on the GPU is float32 GEMMs: TF32 (10-bit mantissa) would move distances by ~1e-3
    // relative and change which bank row is nearest. libtorch's default is off; keep it so.
    if (device.is_cuda()) at::globalContext().setAllowTF32CuBLAS(false);
    applyThreads();
    if (!backbone) backbone = makeBackbone(opts, device);
    const auto& bi = backbone->info();
    pre.resize = opts.resize;
    pre.crop = opts.crop;
    pre.mode = opts.resizeMode;
    pre.upscale = opts.upscale;
    pre.mean = bi.mean;
    pre.std = bi.std;
    publishInfo();
  }

  void publishInfo() {
    EngineInfo i;
    i.backboneName = backbone->info().name;
    i.backboneSha256 = backbone->info().sha256;
    i.fitted = live != nullptr;
    i.bankRows = live ? live->bank->ntotal() : 0;
    i.featureDim = opts.targetDim;
    i.trainImages = live ? live->trainImages : 0;
    i.trainPatches = live ? live->trainPatches : 0;
    i.updates = live ? live->updates : 0;
    i.updateRows = live ? live->updateRows : 0;
    i.device = device.str();
    std::lock_guard<std::mutex> lock(infoMutex);
    snapshot = std::move(i);
  }

  // Runtime override of opts.threads (Engine::setThreads), read by worker threads. 0: none.
  std::atomic<int> threadsOverride{0};

  // libtorch's thread count is process-wide and its pool never shrinks: never more than the
  // machine's cores, whatever a model file or a caller asks (1024 threads made every engine in the
  // process 6x slower).
  void applyThreads() const {
    const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
    const int want = threadsOverride.load() > 0 ? threadsOverride.load() : opts.threads;
    const int n = want > 0 ? std::min(want, cores) : cores;
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
      auto& group = groups[gi];
      if (hostPaths || tiled(inputs[gi][0])) {
        // One image at a time on CPU: batched convolutions and patch aggregation are no faster
        // per image here (measured, bench/NOTES.md), and per-image passes make every image's
        // features independent of what it was batched with, so batched scoring equals sequential.
        // A tiled image's tiles are batched off the CPU (embedTiled).
        std::vector<torch::Tensor> perImage;
        for (auto& x : inputs[gi]) {
          perImage.push_back(tiled(x) ? embedTiled(x, &group.grid) : embedWhole(x.unsqueeze(0), &group.grid));
          x = torch::Tensor();
        }
        group.features = torch::cat(perImage, 0);  // [B, L, D]
      } else {
        group.features = embedWhole(torch::stack(inputs[gi], 0), &group.grid);  // [B, 3, h, w] -> [B, L, D]
        inputs[gi].clear();
      }
      checkFinite(group.features);  // one host sync per batch off the CPU
    }
    return groups;
  }

  // [B, 3, h, w] -> [B, L, D] patch features and their grid.
  torch::Tensor embedWhole(const torch::Tensor& batch, PatchGrid* grid) const {
    calls::stage("backbone");
    auto taps = backbone->forward(batch);
    calls::stage("patch features");
    return patchFeatures(taps, opts.patchSize, opts.pretrainDim, opts.targetDim, grid,
                         hostPaths ? PatchFeaturesPath::Auto : PatchFeaturesPath::Tensor);
  }

  bool tiled(const torch::Tensor& x) const {  // x: [3, h, w]
    return opts.tileSize > 0 && (x.size(1) > opts.tileSize || x.size(2) > opts.tileSize);
  }

  // x: [3, h, w] -> [1, L, D] over the whole image from overlapping tiles (pipeline/tiles.h); off
  // the CPU the tiles of one shape go through the backbone as one batch.
  torch::Tensor embedTiled(const torch::Tensor& x, PatchGrid* grid) const {
    const auto& strides = backbone->info().strides;
    const TileGeometry tiles{opts.tileSize, opts.tileOverlap, strides.front(), strides.back()};
    return stitchTiles(x, tiles, !hostPaths, [this](const torch::Tensor& crops, PatchGrid* g) { return embedWhole(crops, g); }, grid);
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

  // Scores one embedded group against `model` into results[g.members[b]]: k-NN distances, image
  // scores, maps.
  void scoreGroup(const FittedModel& model, EmbeddedGroup& g, std::vector<ScoreResult>* results) const {
    const int64_t B = g.features.size(0), L = g.features.size(1), D = g.features.size(2);
    const auto& bank = model.bank;
    calls::stage("head apply");
    if (model.head) g.features = model.head->apply(g.features.reshape({B * L, D})).view({B, L, D});  // f(q)
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
    // Every map at its image's own size, post-processed where it was computed; off the CPU they
    // cross to the host in one copy (with the scores), not one per image.
    calls::stage("map to original");
    std::vector<torch::Tensor> full;
    for (int64_t b = 0; b < B; ++b) full.push_back(mapToOriginal(maps[b], g.geometry[b]));  // [H_b, W_b]
    calls::stage("results");
    torch::Tensor hostScores = scores.to(torch::kFloat32), hostMaps;
    if (!hostPaths) {
      std::vector<torch::Tensor> flat = {hostScores};
      for (auto& m : full) flat.push_back(m.reshape(-1));
      hostMaps = torch::cat(flat).to(torch::kCPU);  // [B + sum H_b W_b]
      hostScores = hostMaps.narrow(0, 0, B);
    }
    int64_t at = B;
    for (int64_t b = 0; b < B; ++b) {
      auto& r = (*results)[g.members[b]];
      r.score = hostScores[b].item<float>();
      // Finite features against a finite bank give a finite score unless the model overflows.
      RP_CHECK(std::isfinite(r.score), ModelFile,
               "the model gave a non-finite score (" << r.score << "); its bank or head weights are unusable: refit or restore the model");
      r.height = full[b].size(0);
      r.width = full[b].size(1);
      const int64_t n = r.height * r.width;
      auto m = hostPaths ? full[b].contiguous() : hostMaps.narrow(0, at, n);
      at += n;
      r.map.assign(m.data_ptr<float>(), m.data_ptr<float>() + n);
    }
  }

  // withBlob false: without the backbone's bytes (a content hash does not read them).
  ModelContents contents(bool withBlob = true) const {
    ModelContents m;
    m.options = opts;
    m.backboneName = backbone->info().name;
    m.backboneSha256 = backbone->info().sha256;
    m.backboneKind = backbone->kind();
    if (withBlob) m.backboneBlob = backbone->blob();
    m.bank = live->bank->rows();
    if (live->head) {
      m.headWeight = live->head->fWeight();
      m.headBias = live->head->fBias();
    }
    m.trainImages = live->trainImages;
    m.trainPatches = live->trainPatches;
    m.coresetRadius = live->coresetRadius2 >= 0 ? std::sqrt(live->coresetRadius2) : -1;
    m.updates = live->updates;
    m.updateRows = live->updateRows;
    m.metadata = metadata;
    return m;
  }

  // Leave-one-image-out: up to `count` staged images, spread evenly over the input, each scored
  // against `model`'s bank without the rows it contributed (the coreset's selection is sorted and
  // staged rows are grouped by image, so those rows are one contiguous range of the bank). The
  // same score and map as scoring computes; costs one k-NN search of the image's patches.
  // In an update the staged rows were picked from after the live bank's `bankOffset` rows.
  std::vector<LeaveOutResult> leaveOneImageOut(const FittedModel& model, const std::vector<torch::Tensor>& chunks,
                                               const torch::Tensor& selectedSorted, int64_t bankOffset, int64_t count,
                                               const StageProgressFn& progress) const {
    torch::NoGradGuard noGrad;
    std::vector<StagedImage> images = stagedImages;
    std::sort(images.begin(), images.end(), [](const StagedImage& a, const StagedImage& b) { return a.input < b.input; });
    const int64_t n = images.size(), h = std::min<int64_t>(count, n);
    std::vector<StagedImage> chosen;
    for (int64_t i = 0; i < n; ++i)
      if ((i + 1) * h / n > i * h / n) chosen.push_back(images[i]);
    std::vector<int64_t> chunkStart;  // first staged row of each chunk
    int64_t rows = 0;
    for (const auto& c : chunks) {
      chunkStart.push_back(rows);
      rows += c.size(0);
    }
    auto selected = selectedSorted.to(torch::kCPU).contiguous();
    const int64_t* sel = selected.data_ptr<int64_t>();
    const int64_t M = selected.numel();
    const FlatL2Index& bank = *model.bank;
    const int64_t bankRows = bank.rows().size(0);
    std::vector<LeaveOutResult> out;
    int64_t done = 0;
    for (const auto& im : chosen) {
      checkCancel("while calibrating");
      // The bank rows this image contributed.
      const int64_t b = bankOffset + (std::lower_bound(sel, sel + M, im.rowStart) - sel);
      const int64_t e = bankOffset + (std::lower_bound(sel, sel + M, im.rowStart + im.rows) - sel);
      if (e - b == bankRows) continue;  // the whole bank is this image's: nothing to compare with
      // Its staged rows (they may straddle two chunks).
      std::vector<torch::Tensor> parts;
      for (size_t c = 0; c < chunks.size(); ++c) {
        const int64_t lo = std::max(im.rowStart, chunkStart[c]);
        const int64_t hi = std::min(im.rowStart + im.rows, chunkStart[c] + chunks[c].size(0));
        if (lo < hi) parts.push_back(chunks[c].narrow(0, lo - chunkStart[c], hi - lo));
      }
      auto q = (parts.size() == 1 ? parts[0] : torch::cat(parts, 0)).to(device, torch::kFloat32);  // [L, D]
      torch::Tensor d2, nn;
      bank.search(q, 1, &d2, &nn, RowRange{b, e});
      auto patch = (opts.distance == Distance::Euclidean ? d2.sqrt() : d2).view({1, im.rows});  // [1, L]
      auto score = opts.reweight
                       ? reweightedImageScores(patch, nn.view({1, im.rows}), q.unsqueeze(0), bank, opts.reweightNeighbors, RowRange{b, e})
                       : maxImageScores(patch);
      auto map = anomalyMaps(patch.view({1, im.gridH, im.gridW}), im.cropH, im.cropW, opts.blurSigma)[0];
      LeaveOutResult r;
      r.input = im.input;
      r.score = score.to(torch::kCPU).item<float>();
      r.mapMin = map.min().item<float>();
      r.mapMax = map.max().item<float>();
      r.mapMean = map.mean().item<float>();
      out.push_back(r);
      if (progress) progress("calibrate", ++done, static_cast<int64_t>(chosen.size()), std::nan(""));
    }
    return out;
  }

  CoresetOptions coresetOptions() const {
    CoresetOptions co;
    co.ratio = opts.coresetRatio;
    co.projectionDim = opts.coresetProjection;
    co.numStarts = opts.coresetStarts;
    co.seed = opts.seed;
    co.deviceLoop = !hostPaths;
    return co;
  }

  // f(p) of staged rows (host) computed on the engine's device, back to the staging dtype on the host.
  torch::Tensor applyHead(const ReConPatchHead& head, const torch::Tensor& rows) const {
    return head.apply(rows.to(device)).to(torch::kCPU, stagingType());
  }

  // Merge and reduce: the staged patches, over budget, become a coreset of half the budget.
  void reduceStaging() {
    calls::stage("reduce staged features");
    auto chunks = staging.take();
    CoresetOptions co = coresetOptions();
    co.count = stagingBudget / 2;
    auto selected = std::get<0>(approximateGreedyCoreset(chunks, co, nullptr, &cancel, nullptr, device).sort());
    staging = FeatureStaging(stagingType(), torch::kCPU);
    for (auto& rows : gatherRows(chunks, selected)) staging.append(rows);
    // Reduced images keep only part of their rows: they can no longer be scored leave-one-out
    // (the images staged after the last reduction still can).
    stagedImages.clear();
    releaseFreedMemory();
  }

  // The rows of the concatenated chunks at sorted `selected` indices, chunk by chunk; each chunk
  // is released once read unless `keep` (leave-one-image-out reads them once more).
  static std::vector<torch::Tensor> gatherRows(std::vector<torch::Tensor>& chunks, const torch::Tensor& selected, bool keep = false) {
    std::vector<torch::Tensor> picked;
    int64_t offset = 0;
    for (auto& c : chunks) {
      auto lo = offset, hi = offset + c.size(0);
      auto mask = (selected >= lo).logical_and(selected < hi);
      auto local = selected.masked_select(mask) - lo;
      if (local.numel() > 0) picked.push_back(c.index_select(0, local.to(c.device())));
      offset = hi;
      if (!keep) c = torch::Tensor();
    }
    return picked;
  }

  // Update: the live model grown by the staged patches (through the live head) that lie outside
  // its coverage, selected greedily in the coreset's projected space.
  // leaveOut > 0: the new images are then scored leave-one-image-out against the grown bank.
  std::unique_ptr<FittedModel> grownModel(std::vector<torch::Tensor>& chunks, int64_t images, int64_t patches,
                                          const StageProgressFn& progress, int64_t leaveOut) {
    const FittedModel& base = *live;
    calls::stage("head apply");
    if (base.head) for (auto& c : chunks) c = applyHead(*base.head, c);
    auto projection = coresetProjection(opts.targetDim, coresetOptions(), device);  // [D, p]
    auto bankProjected = base.bank->rows().mm(projection);                          // [B, p]
    std::vector<torch::Tensor> fresh;
    for (const auto& c : chunks) fresh.push_back(c.to(device, torch::kFloat32).mm(projection));
    double radius2 = base.coresetRadius2 >= 0 ? base.coresetRadius2 : coverageRadiusBound(bankProjected);
    calls::stage("coreset");
    auto cb = [&](int64_t done, int64_t total) {
      calls::progress(done, total);
      if (progress) progress("coreset", done, total, std::nan(""));
    };
    auto selected = std::get<0>(extendCoreset(bankProjected, torch::cat(fresh, 0), radius2, cb, &cancel).sort());
    auto added = gatherRows(chunks, selected, leaveOut > 0);
    auto model = std::make_unique<FittedModel>();
    model->head = base.head;
    model->bank = std::make_unique<FlatL2Index>(opts.targetDim);
    std::vector<torch::Tensor> rows = {base.bank->rows()};
    for (auto& a : added) rows.push_back(a.to(device, torch::kFloat32));
    model->bank->add(torch::cat(rows, 0));
    model->trainImages = base.trainImages + images;
    model->trainPatches = base.trainPatches + patches;
    model->coresetRadius2 = radius2;
    model->updates = base.updates + 1;
    model->updateRows = base.updateRows + selected.numel();
    if (leaveOut > 0) calls::stage("leave one out");
    if (leaveOut > 0) this->leaveOut = leaveOneImageOut(*model, chunks, selected, base.bank->rows().size(0), leaveOut, progress);
    return model;
  }

  // Scores images against `model`: one by one on the CPU (no faster batched here, and it makes
  // each result independent of its batch-mates: GEMM rounding depends on the row count), so
  // batched scoring returns exactly what sequential calls return; one batch elsewhere.
  std::vector<ScoreResult> scoreWith(const FittedModel& model, const std::vector<RawImageView>& images) {
    applyThreads();
    torch::NoGradGuard noGrad;
    std::vector<ScoreResult> results(images.size());
    if (hostPaths) {
      for (size_t i = 0; i < images.size(); ++i) {
        calls::item(static_cast<int64_t>(i) + 1, static_cast<int64_t>(images.size()));
        for (auto& g : embed({images[i]})) {
          g.members[0] = i;
          scoreGroup(model, g, &results);
        }
      }
    } else {
      for (auto& g : embed(images)) scoreGroup(model, g, &results);
    }
    return results;
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
  std::lock_guard<std::mutex> lock(impl_->infoMutex);
  return impl_->snapshot;
}

void Engine::fitBegin(FitMode mode, int64_t maxStagedPatches) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  calls::Scope call(impl_->id, mode == FitMode::Update ? "updateBegin" : "fitBegin", impl_->label.c_str());
  RP_CHECK(mode == FitMode::Fit || impl_->live != nullptr, NotFitted,
           "update() needs a fitted engine; call fit() with good images or load() a model first");
  RP_CHECK(maxStagedPatches == 0 || mode == FitMode::Fit, InvalidOption, "maxStagedPatches applies to fit(), not to update()");
  impl_->cancel = false;
  impl_->fitting = true;
  impl_->fitMode = mode;
  impl_->stagingBudget = maxStagedPatches;
  impl_->stagingPatches = 0;
  impl_->staging = FeatureStaging(impl_->stagingType(), torch::kCPU);
  impl_->stagingImages = 0;
  impl_->stagedImages.clear();
  impl_->leaveOut.clear();
  impl_->pending.reset();
}

void Engine::fitAdd(const std::vector<RawImageView>& images) {
  guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    calls::Scope call(impl_->id, "fitAdd", impl_->label.c_str());
    RP_CHECK(impl_->fitting, Internal, "fitAdd called outside a fit");
    impl_->checkCancel("while embedding images");
    impl_->applyThreads();
    const int64_t firstInput = impl_->stagingImages;  // input positions count every image staged
    for (auto& g : impl_->embed(images)) {
      calls::stage("stage features");
      const int64_t L = g.features.size(1), start = impl_->staging.rows();
      for (size_t b = 0; b < g.members.size(); ++b)
        impl_->stagedImages.push_back({firstInput + static_cast<int64_t>(g.members[b]), start + static_cast<int64_t>(b) * L, L,
                                       g.grid.height, g.grid.width, g.geometry[b].cropH, g.geometry[b].cropW});
      impl_->staging.append(g.features.reshape({-1, g.features.size(2)}));  // [B*L, D]
      impl_->stagingImages += static_cast<int64_t>(g.members.size());
      impl_->stagingPatches += g.features.size(0) * g.features.size(1);
    }
    if (impl_->stagingBudget > 0 && impl_->staging.rows() > impl_->stagingBudget) impl_->reduceStaging();
  });
}

void Engine::fitEnd(const StageProgressFn& progress, int64_t leaveOut) {
  guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    auto& I = *impl_;
    calls::Scope call(I.id, I.fitMode == FitMode::Update ? "updateEnd" : "fitEnd", I.label.c_str());
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
    if (I.fitMode == FitMode::Update) {
      I.pending = I.grownModel(chunks, I.stagingImages, I.stagingPatches, progress, leaveOut);
      chunks.clear();
    } else {
      // ReConPatch: train f on the nominal patches, then the bank is f(p) (never g).
      std::shared_ptr<ReConPatchHead> head;
      if (I.opts.head) {
        calls::stage("head training");
        head = std::make_shared<ReConPatchHead>(I.opts.targetDim, I.headOptions(), I.device);
        head->train(chunks, [&](const HeadProgress& p) {
          calls::progress(p.iteration, p.total);
          if (progress) progress("head", p.iteration, p.total, p.loss);
        }, &I.cancel);
        calls::stage("head apply");
        for (auto& c : chunks) c = I.applyHead(*head, c);
      }
      CoresetOptions co = I.coresetOptions();
      // When part of the patches were reduced away (a staging budget, or shards staged elsewhere):
      // keep the share of every patch seen that the ratio asks for, out of what is left.
      if (I.stagingPatches > rows) co.count = std::min(rows, coresetSize(I.stagingPatches, co.ratio));
      calls::stage("coreset");
      torch::Tensor selected;
      double radius2 = 0;  // every row kept: nothing lies outside the bank
      if (co.ratio >= 1.0 && co.count == 0) {
        selected = torch::arange(rows, torch::kInt64);
      } else {
        auto cb = [&](int64_t done, int64_t total) {
          calls::progress(done, total);
          if (progress) progress("coreset", done, total, std::nan(""));
        };
        selected = approximateGreedyCoreset(chunks, co, cb, &I.cancel, &radius2, I.device);
      }
      // Gather the selected rows chunk by chunk: the staged features are never concatenated, and
      // each chunk is released once read (past this point the fit no longer needs them).
      calls::stage("gather bank");
      selected = std::get<0>(selected.sort());
      auto picked = Impl::gatherRows(chunks, selected, leaveOut > 0);
      for (auto& p : picked) p = p.to(I.device, torch::kFloat32);
      auto model = std::make_unique<FittedModel>();
      model->bank = std::make_unique<FlatL2Index>(I.opts.targetDim);
      model->bank->add(torch::cat(picked, 0));
      model->head = std::move(head);
      model->trainImages = I.stagingImages;
      model->trainPatches = I.stagingPatches;
      model->coresetRadius2 = radius2;
      if (leaveOut > 0) {
        calls::stage("leave one out");
        I.leaveOut = I.leaveOneImageOut(*model, chunks, selected, 0, leaveOut, progress);
        chunks.clear();
      }
      I.pending = std::move(model);
    }
    I.stagingImages = 0;
    I.fitting = false;
    releaseFreedMemory();  // the staged features' blocks, kept by malloc for reuse
  });
}

std::string Engine::fitTakeStaged(const std::string& metadata, StagedShardInfo* info) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto& I = *impl_;
    calls::Scope call(I.id, "fitTakeStaged", I.label.c_str());
    RP_CHECK(I.fitting && I.fitMode == FitMode::Fit, Internal, "fitTakeStaged called outside a fit");
    RP_CHECK(I.stagingImages > 0, EmptyTrainingSet, "the shard received no images; pass at least one image of a good (defect-free) part");
    StagedFeatures f;
    f.options = I.opts;
    f.backboneSha256 = I.backbone->info().sha256;
    f.images = I.stagingImages;
    f.patches = I.stagingPatches;
    f.metadata = metadata;
    *info = StagedShardInfo{f.images, f.patches, I.staging.rows(), metadata};
    auto chunks = I.staging.take();
    std::string bytes = encodeStaged(f, chunks);
    chunks.clear();
    I.stagingImages = 0;
    I.stagedImages.clear();
    I.fitting = false;
    releaseFreedMemory();
    return bytes;
  });
}

StagedShardInfo Engine::fitAddStaged(std::string_view bytes, const std::string& label) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto& I = *impl_;
    calls::Scope call(I.id, "fitAddStaged", I.label.c_str());
    RP_CHECK(I.fitting && I.fitMode == FitMode::Fit, Internal, "fitAddStaged called outside a fit");
    I.checkCancel("while adding staged features");
    StagedFeatures f = decodeStaged(bytes, label);
    RP_CHECK(f.backboneSha256 == I.backbone->info().sha256, InvalidOption,
             label << " was staged with another backbone (SHA-256 " << f.backboneSha256.substr(0, 12) << "..., this engine's "
                   << I.backbone->info().sha256.substr(0, 12) << "...); stage every shard with the merging engine's options");
    const std::string differ = stagedOptionsDiffer(f.options, I.opts);
    RP_CHECK(differ.empty(), InvalidOption, label << " was staged with other options (" << differ << "); stage every shard with the merging engine's options");
    // Rows staged elsewhere have no image layout here: none of them is scored leave-one-out.
    const int64_t rows = f.rows.size(0);
    if (rows > 0) I.staging.append(f.rows);
    f.rows = torch::Tensor();
    I.stagingImages += f.images;
    I.stagingPatches += f.patches;
    if (I.stagingBudget > 0 && I.staging.rows() > I.stagingBudget) I.reduceStaging();
    return StagedShardInfo{f.images, f.patches, rows, f.metadata};
  });
}

std::vector<ScoreResult> Engine::scorePending(const std::vector<RawImageView>& images) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    calls::Scope call(impl_->id, "scorePending", impl_->label.c_str());
    RP_CHECK(impl_->pending != nullptr, Internal, "scorePending called without a pending model");
    return impl_->scoreWith(*impl_->pending, images);
  });
}

void Engine::fitCommit(const std::string& metadata) {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  RP_CHECK(impl_->pending != nullptr, Internal, "fitCommit called without a pending model");
  impl_->live = std::move(impl_->pending);
  impl_->metadata = metadata;
  impl_->stagedImages.clear();
  impl_->leaveOut.clear();
  impl_->publishInfo();
}

std::vector<LeaveOutResult> Engine::leaveOutResults() const {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  return impl_->leaveOut;
}

void Engine::fitAbort() {
  std::lock_guard<std::mutex> lock(impl_->mutex);
  calls::Scope call(impl_->id, "fitAbort", impl_->label.c_str());
  impl_->staging.clear();
  impl_->stagingImages = 0;
  impl_->stagedImages.clear();
  impl_->leaveOut.clear();
  impl_->fitting = false;
  impl_->pending.reset();
  releaseFreedMemory();
}

void Engine::requestCancel() { impl_->cancel = true; }

std::vector<ScoreResult> Engine::score(const std::vector<RawImageView>& images) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    calls::Scope call(impl_->id, "score", impl_->label.c_str());
    RP_CHECK(impl_->live != nullptr, NotFitted, "the engine is not fitted; call fit() with good images or load() a model first");
    return impl_->scoreWith(*impl_->live, images);
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

std::string Engine::encode() const {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    calls::Scope call(impl_->id, "encode", impl_->label.c_str());
    RP_CHECK(impl_->live != nullptr, NotFitted, "cannot save an engine that is not fitted; call fit() first");
    return encodeModel(impl_->contents());
  });
}

std::string Engine::contentHash() const {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
    calls::Scope call(impl_->id, "contentHash", impl_->label.c_str());
    RP_CHECK(impl_->live != nullptr, NotFitted, "the engine is not fitted; call fit() first");
    return rp::contentHash(impl_->contents(false));
  });
}

DecodedModel::DecodedModel(std::string_view bytes, std::string label)
    : contents_(std::make_unique<ModelContents>(guarded([&] {
        calls::Scope call(0, "decode", label.c_str());  // no engine yet: id 0
        return decodeModel(bytes, label);
      }))),
      label_(std::move(label)) {}
DecodedModel::~DecodedModel() = default;
const EngineOptions& DecodedModel::options() const { return contents_->options; }

std::unique_ptr<Engine> Engine::fromModel(DecodedModel& decoded) {
  return guarded([&] {
    RP_CHECK(decoded.contents_ != nullptr, Internal, "a decoded model builds one engine only");
    ModelContents m = std::move(*decoded.contents_);
    decoded.contents_.reset();
    const std::string& label = decoded.label_;
    const uint64_t id = nextEngineId++;
    calls::Scope call(id, "load", label.c_str());
    calls::stage("backbone");
    auto device = resolveDevice(m.options.device);
    auto backbone = restoreBackbone(m.backboneKind, m.options, std::move(m.backboneBlob), label, device);
    RP_CHECK(backbone->info().sha256 == m.backboneSha256, ModelFile,
             label << ": backbone '" << m.backboneName << "' does not match the one it was fitted with");
    auto impl = std::make_unique<Impl>(id, m.options, std::move(backbone));
    calls::stage("bank");
    auto model = std::make_unique<FittedModel>();
    model->bank = std::make_unique<FlatL2Index>(m.options.targetDim);
    model->bank->add(m.bank.to(impl->device));
    if (m.options.head) {
      model->head = std::make_shared<ReConPatchHead>(m.headWeight.to(impl->device), m.headBias.to(impl->device));
      // Finite weights can still overflow (3e38 does): the head must map the bank's own rows,
      // which live on the scale of the features it sees, to finite values.
      torch::NoGradGuard noGrad;
      auto probe = model->head->apply(m.bank.narrow(0, 0, std::min<int64_t>(m.bank.size(0), 1024)).to(impl->device));
      RP_CHECK(torch::isfinite(probe).all().item<bool>(), ModelFile,
               label << " has ReConPatch head weights that overflow on its own bank; it is damaged or was not written by reconpatch");
    }
    model->trainImages = m.trainImages;
    model->trainPatches = m.trainPatches;
    model->coresetRadius2 = m.coresetRadius >= 0 ? m.coresetRadius * m.coresetRadius : -1;
    model->updates = m.updates;
    model->updateRows = m.updateRows;
    impl->live = std::move(model);
    impl->metadata = std::move(m.metadata);
    impl->publishInfo();
    return std::unique_ptr<Engine>(new Engine(std::move(impl)));
  });
}

std::vector<float> Engine::embed(const RawImageView& image, int64_t* rows, int64_t* dim) {
  return guarded([&] {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    auto onStream = impl_->stream.enter();
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
