#include "core/pipeline/flat_l2_index.h"

#include <algorithm>
#include <limits>

#include "core/error.h"
#include "core/simd.h"

namespace rp {

void FlatL2Index::add(const torch::Tensor& rows) {
  RP_CHECK(rows.dim() == 2 && rows.size(1) == dim_, Internal,
           "FlatL2Index::add expects [n, " << dim_ << "], got " << rows.sizes());
  auto r = rows.to(torch::kFloat32).contiguous();
  bank_ = bank_.defined() ? torch::cat({bank_, r}, 0) : r;
  norms_ = bank_.pow(2).sum(1);
  int8_.reset();
  const bool wanted = kernel_ == KnnKernel::Int8 || (kernel_ == KnnKernel::Auto && knnInt8Enabled());
  if (wanted && knnInt8Supported() && bank_.device().is_cpu()) {
    auto int8 = std::make_shared<Int8Bank>(bank_, norms_);
    if (int8->usable()) int8_ = std::move(int8);
  }
}

bool FlatL2Index::usesInt8() const {
  return int8_ && (kernel_ == KnnKernel::Int8 || (kernel_ == KnnKernel::Auto && knnInt8Enabled()));
}

void FlatL2Index::nearestInt8(const torch::Tensor& q, torch::Tensor* distances, torch::Tensor* indices,
                              RowRange exclude) const {
  std::vector<int64_t> fallback;
  int8_->nearest(q, distances, indices, &fallback, exclude.begin, exclude.end);
  if (fallback.empty()) return;
  auto which = torch::tensor(fallback, torch::kInt64);
  auto rest = q.index_select(0, which);  // [f, dim]
  for (int64_t start = 0; start < rest.size(0); start += queryRows_) {
    const int64_t len = std::min(queryRows_, rest.size(0) - start);
    torch::Tensor d, i;
    nearestBlockCpu(rest.narrow(0, start, len), spans(exclude), &d, &i);
    auto at = which.narrow(0, start, len);
    distances->index_copy_(0, at, d);
    indices->index_copy_(0, at, i);
  }
}

std::vector<RowRange> FlatL2Index::spans(RowRange exclude) const {
  const int64_t n = ntotal();
  const int64_t b = std::clamp<int64_t>(exclude.begin, 0, n), e = std::clamp<int64_t>(exclude.end, b, n);
  std::vector<RowRange> out;
  if (b > 0) out.push_back({0, b});
  if (e < n) out.push_back({e, n});
  return out;
}

void FlatL2Index::search(const torch::Tensor& queries, int64_t k, torch::Tensor* distances,
                         torch::Tensor* indices, RowRange exclude) const {
  // queries: [q, dim]
  RP_CHECK(ntotal() > 0, NotFitted, "the memory bank is empty");
  RP_CHECK(queries.dim() == 2 && queries.size(1) == dim_, Internal,
           "FlatL2Index::search expects [q, " << dim_ << "], got " << queries.sizes());
  const auto parts = spans(exclude);
  int64_t available = 0;
  for (const auto& p : parts) available += p.end - p.begin;
  RP_CHECK(available > 0, Internal, "FlatL2Index::search: every bank row is excluded");
  torch::NoGradGuard noGrad;
  k = std::min(k, available);
  auto q = queries.to(torch::kFloat32).contiguous();
  // The int8 pass leaves the excluded rows out of its bounds and candidates (leave-one-image-out
  // calibration searches at int8 speed too).
  if (k == 1 && q.device().is_cpu() && usesInt8()) {
    nearestInt8(q, distances, indices, exclude);
    return;
  }
  std::vector<torch::Tensor> ds, is;
  for (int64_t start = 0; start < q.size(0); start += queryRows_) {
    torch::Tensor d, i;
    auto block = q.narrow(0, start, std::min(queryRows_, q.size(0) - start));
    if (k == 1 && q.device().is_cpu())
      nearestBlockCpu(block, parts, &d, &i);
    else
      searchBlock(block, k, parts, &d, &i);
    ds.push_back(d);
    is.push_back(i);
  }
  *distances = ds.size() == 1 ? ds[0] : torch::cat(ds, 0);
  *indices = is.size() == 1 ? is[0] : torch::cat(is, 0);
}

namespace {

// For each of m rows of a [m, n] tile of dot products q.b: the smallest |b|^2 - 2 q.b and its
// column (the lowest on ties), kept when smaller than the row's best so far (so ties across
// chunks keep the earlier chunk). Overwrites the tile with the values it compares.
RP_X86_V3_CLONES void rowMinima(float* tile, int64_t m, int64_t n, const float* norms, int64_t offset,
                                float* bestD, int64_t* bestI) {
  for (int64_t i = 0; i < m; ++i) {
    float* r = tile + i * n;
    float mins[8];
    std::fill(mins, mins + 8, std::numeric_limits<float>::infinity());
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
      for (int l = 0; l < 8; ++l) {
        r[j + l] = norms[j + l] - 2.f * r[j + l];
        mins[l] = r[j + l] < mins[l] ? r[j + l] : mins[l];
      }
    }
    for (; j < n; ++j) {
      r[j] = norms[j] - 2.f * r[j];
      mins[0] = r[j] < mins[0] ? r[j] : mins[0];
    }
    float best = mins[0];
    for (int l = 1; l < 8; ++l) best = mins[l] < best ? mins[l] : best;
    if (!(best < bestD[i])) continue;
    int64_t at = 0;
    while (at < n && r[at] != best) ++at;  // found: best is one of the stored values
    bestD[i] = best;
    bestI[i] = offset + at;
  }
}

}  // namespace

void FlatL2Index::nearestBlockCpu(const torch::Tensor& q, const std::vector<RowRange>& spans, torch::Tensor* distances,
                                  torch::Tensor* indices) const {
  // q: [m, dim]. Between the GEMMs (OpenBLAS's threads) this runs no ATen element-wise op: those
  // use OpenMP's threads, and on two cores the two pools' spinning workers slowed the search to
  // 45-81% of the GEMM rate, varying between processes (bench/NOTES.md).
  const int64_t m = q.size(0);
  auto bestD = torch::full({m}, std::numeric_limits<float>::infinity());  // [m]
  auto bestI = torch::zeros({m}, torch::kInt64);                          // [m]
  auto tileStorage = torch::empty({m * std::min(chunkRows_, ntotal())});  // one [m, n] tile, reused
  const float* norms = norms_.data_ptr<float>();
  for (const auto& span : spans) {
    for (int64_t start = span.begin; start < span.end; start += chunkRows_) {
      const int64_t n = std::min(chunkRows_, span.end - start);
      auto tile = tileStorage.narrow(0, 0, m * n).view({m, n});  // [m, n] q.b
      torch::mm_out(tile, q, bank_.narrow(0, start, n).t());
      rowMinima(tile.data_ptr<float>(), m, n, norms + start, start, bestD.data_ptr<float>(), bestI.data_ptr<int64_t>());
    }
  }
  *distances = bestD.add_(q.pow(2).sum(1)).clamp_min_(0).unsqueeze(1);  // + |q|^2: [m, 1]
  *indices = bestI.unsqueeze(1);                                        // [m, 1]
}

void FlatL2Index::searchBlock(const torch::Tensor& q, int64_t k, const std::vector<RowRange>& spans, torch::Tensor* distances,
                              torch::Tensor* indices) const {
  auto qn = q.pow(2).sum(1, true);  // [m, 1]
  torch::Tensor bestD, bestI;
  for (const auto& span : spans) {
    for (int64_t start = span.begin; start < span.end; start += chunkRows_) {
      const int64_t n = std::min(chunkRows_, span.end - start);
      auto b = bank_.narrow(0, start, n);                                      // [n, dim]
      auto d = torch::addmm(norms_.narrow(0, start, n).unsqueeze(0), q, b.t(), 1, -2).add_(qn);  // [q, n]
      torch::Tensor cd, ci;
      if (k == 1) {
        std::tie(cd, ci) = d.min(1, true);
      } else {
        std::tie(cd, ci) = d.topk(std::min(k, n), 1, false, true);
      }
      ci.add_(start);
      if (!bestD.defined()) {
        bestD = cd;
        bestI = ci;
      } else {
        // Merge with the running k best. Earlier chunks come first, so ties keep the lower index.
        auto allD = torch::cat({bestD, cd}, 1), allI = torch::cat({bestI, ci}, 1);
        torch::Tensor md, mi;
        if (k == 1) {
          std::tie(md, mi) = allD.min(1, true);
        } else {
          std::tie(md, mi) = allD.topk(std::min<int64_t>(k, allD.size(1)), 1, false, true);
        }
        bestD = md;
        bestI = allI.gather(1, mi);
      }
    }
  }
  *distances = bestD.clamp_min_(0);
  *indices = bestI;
}

}  // namespace rp
