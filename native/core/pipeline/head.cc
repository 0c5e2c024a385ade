#include "core/pipeline/head.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <vector>

#include "core/device_context.h"
#include "core/error.h"

namespace rp {

torch::Tensor pairwiseSquaredDistances(const torch::Tensor& z) {
  auto n = z.pow(2).sum(1, true);                          // [N, 1]
  return (n - 2 * gramMatrix(z) + n.t()).clamp_min(0);     // [N, N]
}

torch::Tensor gramMatrix(const torch::Tensor& z) {
  const int64_t N = z.size(0), h = N / 2;
  if ((torch::GradMode::is_enabled() && z.requires_grad()) || !z.device().is_cpu() || N < 256) return z.mm(z.t());
  auto zc = z.contiguous();
  auto a = zc.narrow(0, 0, h), b = zc.narrow(0, h, N - h);
  auto g = torch::empty({N, N}, z.options());
  auto upper = g.narrow(0, 0, h).narrow(1, h, N - h);  // a b^T
  torch::mm_out(upper, a, b.t());
  auto top = g.narrow(0, 0, h).narrow(1, 0, h);
  torch::mm_out(top, a, a.t());
  auto bottom = g.narrow(0, h, N - h).narrow(1, h, N - h);
  torch::mm_out(bottom, b, b.t());
  g.narrow(0, h, N - h).narrow(1, 0, h).copy_(upper.t());
  return g;
}

torch::Tensor knnMatrix(const torch::Tensor& d2, int64_t k) {
  const int64_t N = d2.size(0);
  k = std::min(k, N);
  auto d = d2.clone();
  d.fill_diagonal_(-1.0);  // self first, whatever the duplicates
  auto idx = std::get<1>(d.topk(k, 1, /*largest=*/false, /*sorted=*/true));  // [N, k]
  return torch::zeros_like(d2).scatter_(1, idx, 1.0);
}

torch::Tensor pairwiseSimilarity(const torch::Tensor& d2, double sigma) { return torch::exp(-d2 / sigma); }
torch::Tensor pairwiseSimilarity(const torch::Tensor& d2, const torch::Tensor& sigma) { return torch::exp(-d2 / sigma); }

torch::Tensor kthNeighbourBandwidth(const torch::Tensor& d2, int64_t k) {
  const int64_t N = d2.size(0);
  if (N < 2) return torch::ones({}, d2.options());
  auto d = d2.clone();
  d.fill_diagonal_(std::numeric_limits<float>::infinity());  // self is not its own neighbour
  auto kth = std::get<0>(d.topk(std::min(k, N - 1), 1, /*largest=*/false, /*sorted=*/true)).select(1, -1);  // [N]
  return kth.mean().clamp_min(1e-12);
}

torch::Tensor contextualSimilarity(const torch::Tensor& d2, int64_t k) {
  // Off the CPU: the dense products on the device. The index lists below are host loops, and
  // bringing them over would make every iteration wait for the device; 4 N^3 FLOPs are cheap there.
  if (!d2.device().is_cpu()) return contextualSimilarityDense(d2, k);
  // The dense form's products are mostly zeros: A has k ones per row, A' floor(k/2). So
  // w~_ij = |N(i) n N(j)| / k for the k entries j of N(i), R_i = the l in A'(i) with i in A'(l),
  // and w^_i. = sum_{l in R_i} w~_l. / |R_i|: N k^2 work in all, against 4 N^3 FLOPs dense.
  torch::NoGradGuard noGrad;
  const int64_t N = d2.size(0), kk = std::min(k, N), kh = std::min(std::max<int64_t>(1, k / 2), N);
  auto d = d2.clone();
  d.fill_diagonal_(-1.0);  // self first, whatever the duplicates (as knnMatrix)
  auto idxT = std::get<1>(d.topk(kk, 1, /*largest=*/false, /*sorted=*/true)).cpu().contiguous();  // [N, kk]
  // A' by its own top-k, as knnMatrix builds it: among equal distances top-k may pick other
  // points than the prefix of the longer list.
  auto halfT = std::get<1>(d.topk(kh, 1, /*largest=*/false, /*sorted=*/true)).cpu().contiguous();  // [N, kh]
  const int64_t* nbr = idxT.data_ptr<int64_t>();
  const int64_t* half = halfT.data_ptr<int64_t>();
  auto inList = [](const int64_t* list, int64_t j, int64_t len) {
    for (int64_t a = 0; a < len; ++a)
      if (list[a] == j) return true;
    return false;
  };
  // w~ on A's support: wt[i * kk + a] belongs to (i, nbr[i][a]); the count is exact, then / k as
  // the dense form rounds it.
  std::vector<float> wt(static_cast<size_t>(N * kk));
  for (int64_t i = 0; i < N; ++i)
    for (int64_t a = 0; a < kk; ++a) {
      const int64_t j = nbr[i * kk + a];
      int64_t shared = 0;
      for (int64_t b = 0; b < kk; ++b) shared += inList(nbr + j * kk, nbr[i * kk + b], kk);
      wt[i * kk + a] = static_cast<float>(shared) / static_cast<float>(k);
    }
  auto wHat = torch::zeros({N, N});  // [N, N] on the CPU
  float* out = wHat.data_ptr<float>();
  std::vector<int64_t> touched;
  for (int64_t i = 0; i < N; ++i) {
    float* row = out + i * N;
    float reciprocal = 0;  // |R_i| >= 1: i is first in its own A'(i)
    touched.clear();
    for (int64_t b = 0; b < kh; ++b) {
      const int64_t l = half[i * kh + b];
      if (!inList(half + l * kh, i, kh)) continue;
      reciprocal += 1;
      for (int64_t a = 0; a < kk; ++a) {
        row[nbr[l * kk + a]] += wt[l * kk + a];
        touched.push_back(nbr[l * kk + a]);
      }
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (int64_t j : touched) row[j] /= reciprocal;
  }
  return (wHat + wHat.t()).mul_(0.5).to(d2.device());
}

torch::Tensor contextualSimilarityDense(const torch::Tensor& d2, int64_t k) {
  auto A = knnMatrix(d2, k);                                         // [N, N]
  auto wTilde = A.mm(A.t()).div_(static_cast<double>(k)).mul_(A);    // shared neighbours, on A's support
  auto Ah = knnMatrix(d2, std::max<int64_t>(1, k / 2));
  auto R = Ah * Ah.t();                                              // reciprocal neighbours (self included)
  auto wHat = R.mm(wTilde).div_(R.sum(1, true));                     // rowsum(R) >= 1
  return (wHat + wHat.t()).mul_(0.5);
}

torch::Tensor relaxedContrastiveLossAutograd(const torch::Tensor& z, const torch::Tensor& w, double margin) {
  auto dist = (pairwiseSquaredDistances(z) + 1e-9).sqrt();          // [N, N], finite gradient at 0
  auto delta = dist / dist.mean(1, true);                            // relative distances
  auto pull = w * delta.pow(2);
  auto push = (1 - w) * torch::relu(margin - delta).pow(2);
  return (pull + push).sum(1).mean();
}

namespace {

// nn.Linear's default init: U(-1/sqrt(in), 1/sqrt(in)) for weight and bias.
std::pair<torch::Tensor, torch::Tensor> linearInit(int64_t in, int64_t out, at::Generator& gen) {
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  auto w = at::empty({out, in}, torch::kFloat32).uniform_(-bound, bound, gen);
  auto b = at::empty({out}, torch::kFloat32).uniform_(-bound, bound, gen);
  return {w, b};
}

// N rows sampled uniformly (with replacement) from rows stored in chunks. -> [N, D]
torch::Tensor sampleRows(const std::vector<torch::Tensor>& chunks, int64_t rows, int64_t n, at::Generator& gen) {
  auto idx = std::get<0>(at::randint(rows, {n}, gen, torch::kInt64).sort());
  std::vector<torch::Tensor> parts;
  int64_t offset = 0;
  for (const auto& c : chunks) {
    const int64_t hi = offset + c.size(0);
    auto local = idx.masked_select((idx >= offset).logical_and(idx < hi)) - offset;
    if (local.numel() > 0) parts.push_back(c.index_select(0, local.to(c.device())));
    offset = hi;
  }
  return torch::cat(parts, 0).to(torch::kFloat32);
}

}  // namespace

ReConPatchHead::ReConPatchHead(int64_t dim, const HeadOptions& opts, const torch::Device& device) : opts_(opts) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts.seed ^ 0x4ead4eadULL);
  const int64_t proj = opts.projectionDim > 0 ? opts.projectionDim : dim;
  if (opts.initIdentity) {
    fW_ = torch::eye(dim, torch::kFloat32);
    fB_ = torch::zeros({dim}, torch::kFloat32);
  } else {
    std::tie(fW_, fB_) = linearInit(dim, dim, gen);
  }
  std::tie(gW_, gB_) = linearInit(dim, proj, gen);
  fW_ = fW_.to(device); fB_ = fB_.to(device); gW_ = gW_.to(device); gB_ = gB_.to(device);
}

ReConPatchHead::ReConPatchHead(torch::Tensor fWeight, torch::Tensor fBias) : fW_(std::move(fWeight)), fB_(std::move(fBias)) {}

torch::Tensor ReConPatchHead::apply(const torch::Tensor& p) const {
  torch::NoGradGuard noGrad;
  return torch::addmm(fB_, p.to(torch::kFloat32), fW_.t());
}

void ReConPatchHead::emaUpdate(std::vector<torch::Tensor>& partner, const std::vector<torch::Tensor>& current, double ema) {
  torch::NoGradGuard noGrad;
  for (size_t i = 0; i < partner.size(); ++i) partner[i].mul_(ema).add_(current[i].detach(), 1.0 - ema);
}

int64_t ReConPatchHead::train(const std::vector<torch::Tensor>& chunks, const HeadProgressFn& progress,
                              const std::atomic<bool>* cancel) {
  RP_CHECK(!chunks.empty(), EmptyTrainingSet, "no patch features to train the ReConPatch head on");
  int64_t rows = 0;
  for (const auto& c : chunks) rows += c.size(0);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(opts_.seed ^ 0x5a3b1e5ULL);
  std::vector<torch::Tensor> params = {fW_, fB_, gW_, gB_};
  for (auto& p : params) p.set_requires_grad(true);
  std::vector<torch::Tensor> partner;
  for (const auto& p : params) partner.push_back(p.detach().clone());
  torch::optim::AdamW optimizer(params, torch::optim::AdamWOptions(opts_.lr).weight_decay(opts_.weightDecay));
  const int64_t n = std::min(opts_.batch, rows);
  const auto device = fW_.device();

  // Losses stay on the device until read back in one transfer: every lossReadEvery iterations, at
  // the end, or when progress has waited kProgressSeconds. Reading one per iteration (.item())
  // would make the host wait for each iteration's kernels on a GPU. On the CPU nothing waits either
  // way; the values, and the weights, are the same for any read interval (a test checks).
  constexpr double kProgressSeconds = 0.25;
  const int64_t readEvery = std::max<int64_t>(1, opts_.lossReadEvery);
  auto pending = torch::empty({readEvery}, torch::TensorOptions().dtype(torch::kFloat32).device(device));
  int64_t firstPending = 0, pendingCount = 0;
  auto lastRead = std::chrono::steady_clock::now();
  // Adaptive budget: every loss read, window means compared at window ends (on the host, where the
  // read-back already put them).
  std::vector<double> losses;
  bool plateaued = false;
  auto readBack = [&] {
    if (pendingCount == 0) return;
    auto host = pending.narrow(0, 0, pendingCount).to(torch::kCPU);  // the one device sync
    const float* v = host.data_ptr<float>();
    for (int64_t j = 0; j < pendingCount; ++j) {
      const double value = v[j];
      const int64_t it = firstPending + j;
      // A diverged loss is found up to readEvery iterations late; the weights trained since are
      // thrown away with it (the fit fails as a whole).
      RP_CHECK(std::isfinite(value), Internal,
               "ReConPatch head training diverged (loss " << value << " at iteration " << it
                                                          << "); lower head.lr or enable head.normalize");
      if (progress) progress({it + 1, opts_.iterations, value});
      losses.push_back(value);
      const int64_t done = it + 1, W = kPlateauWindow;
      if (opts_.plateau > 0 && done % W == 0 && done >= 2 * W) {
        double recent = 0, before = 0;
        for (int64_t j = done - W; j < done; ++j) recent += losses[j];
        for (int64_t j = done - 2 * W; j < done - W; ++j) before += losses[j];
        if (recent > (1 - opts_.plateau) * before) plateaued = true;
      }
    }
    firstPending += pendingCount;
    pendingCount = 0;
    lastRead = std::chrono::steady_clock::now();
  };

  for (int64_t it = 0; it < opts_.iterations && !plateaued; ++it) {
    // A host flag: checking it does not wait for the device.
    RP_CHECK(!(cancel && cancel->load(std::memory_order_relaxed)), Aborted, "fit was aborted during head training");
    // Cosine decay from lr to 0 over the run.
    const double lr = opts_.lr * 0.5 * (1.0 + std::cos(M_PI * it / static_cast<double>(opts_.iterations)));
    for (auto& group : optimizer.param_groups()) static_cast<torch::optim::AdamWOptions&>(group.options()).lr(lr);

    // Sampled in host memory; to a GPU through pinned memory, asynchronously (a pageable copy
    // would wait for the stream).
    auto p = sampleRows(chunks, rows, n, gen);  // [N, D]
    if (!device.is_cpu()) p = uploadToDevice(p, device);
    torch::Tensor w;                                             // [N, N] pseudo-labels
    {
      torch::NoGradGuard noGrad;
      auto zBar = torch::addmm(partner[3], torch::addmm(partner[1], p, partner[0].t()), partner[2].t());
      if (opts_.normalize) zBar = torch::nn::functional::normalize(zBar, torch::nn::functional::NormalizeFuncOptions().dim(1));
      auto d2 = pairwiseSquaredDistances(zBar);
      auto wC = opts_.denseReference ? contextualSimilarityDense(d2, opts_.k) : contextualSimilarity(d2, opts_.k);
      auto wP = opts_.sigmaRule == SigmaRule::Knn ? pairwiseSimilarity(d2, kthNeighbourBandwidth(d2, opts_.k) * opts_.sigma)
                                                  : pairwiseSimilarity(d2, opts_.sigma);
      w = opts_.alpha * wP + (1 - opts_.alpha) * wC;
    }
    auto z = torch::addmm(gB_, torch::addmm(fB_, p, fW_.t()), gW_.t());  // [N, D']
    auto loss = opts_.denseReference ? relaxedContrastiveLossAutograd(z, w, opts_.margin)
                                     : relaxedContrastiveLoss(z, w, opts_.margin);
    {
      torch::NoGradGuard noGrad;
      pending.narrow(0, pendingCount, 1).copy_(loss.detach().reshape({1}));
    }
    ++pendingCount;
    optimizer.zero_grad();
    loss.backward();
    optimizer.step();
    emaUpdate(partner, params, opts_.ema);
    const bool last = it + 1 == opts_.iterations;
    // With the plateau rule, losses are read at every window end, so that the stop does not
    // depend on the read interval.
    const bool windowEnd = opts_.plateau > 0 && (it + 1) % kPlateauWindow == 0;
    if (pendingCount == readEvery || last || windowEnd ||
        (progress && std::chrono::duration<double>(std::chrono::steady_clock::now() - lastRead).count() >= kProgressSeconds))
      readBack();
  }
  for (auto& p : params) p.set_requires_grad(false);
  fW_ = fW_.detach();
  fB_ = fB_.detach();
  return static_cast<int64_t>(losses.size());  // every iteration run was read back
}

}  // namespace rp
