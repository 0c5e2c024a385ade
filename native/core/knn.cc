#include "core/knn.h"

#include "core/error.h"

namespace rp {

void FlatL2Index::add(const torch::Tensor& rows) {
  RP_CHECK(rows.dim() == 2 && rows.size(1) == dim_, Internal,
           "FlatL2Index::add expects [n, " << dim_ << "], got " << rows.sizes());
  auto r = rows.to(torch::kFloat32).contiguous();
  bank_ = bank_.defined() ? torch::cat({bank_, r}, 0) : r;
  norms_ = bank_.pow(2).sum(1);
}

void FlatL2Index::reset() {
  bank_ = torch::Tensor();
  norms_ = torch::Tensor();
}

void FlatL2Index::search(const torch::Tensor& queries, int64_t k, torch::Tensor* distances,
                         torch::Tensor* indices) const {
  // queries: [q, dim]
  RP_CHECK(ntotal() > 0, NotFitted, "the memory bank is empty");
  RP_CHECK(queries.dim() == 2 && queries.size(1) == dim_, Internal,
           "FlatL2Index::search expects [q, " << dim_ << "], got " << queries.sizes());
  torch::NoGradGuard noGrad;
  k = std::min(k, ntotal());
  auto q = queries.to(torch::kFloat32).contiguous();
  std::vector<torch::Tensor> ds, is;
  for (int64_t start = 0; start < q.size(0); start += queryRows_) {
    torch::Tensor d, i;
    searchBlock(q.narrow(0, start, std::min(queryRows_, q.size(0) - start)), k, &d, &i);
    ds.push_back(d);
    is.push_back(i);
  }
  *distances = ds.size() == 1 ? ds[0] : torch::cat(ds, 0);
  *indices = is.size() == 1 ? is[0] : torch::cat(is, 0);
}

void FlatL2Index::searchBlock(const torch::Tensor& q, int64_t k, torch::Tensor* distances, torch::Tensor* indices) const {
  auto qn = q.pow(2).sum(1, true);  // [m, 1]
  torch::Tensor bestD, bestI;
  for (int64_t start = 0; start < ntotal(); start += chunkRows_) {
    const int64_t n = std::min(chunkRows_, ntotal() - start);
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
        std::tie(md, mi) = allD.topk(k, 1, false, true);
      }
      bestD = md;
      bestI = allI.gather(1, mi);
    }
  }
  *distances = bestD.clamp_min_(0);
  *indices = bestI;
}

}  // namespace rp
