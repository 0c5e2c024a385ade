#include "core/pipeline/feature_staging.h"

#include "core/error.h"
#include "core/memory.h"

namespace rp {

torch::Tensor FeatureStaging::newSlab(int64_t capacity, int64_t d) const {
  const auto options = torch::TensorOptions().dtype(dtype_).device(device_);
  if (device_.is_cpu()) {
    // On huge pages: staging writes every page of its slabs once, and on 4 KiB pages those first
    // touches were most of the "stage features" step (bench/NOTES.md).
    const size_t bytes = static_cast<size_t>(capacity * d) * c10::elementSize(dtype_);
    if (void* p = mapHugePages(bytes))
      return torch::from_blob(p, {capacity, d}, [bytes](void* q) { unmapHugePages(q, bytes); }, options);
  }
  return torch::empty({capacity, d}, options);
}

void FeatureStaging::append(const torch::Tensor& features) {
  // features: [n, D]
  RP_CHECK(features.dim() == 2, Internal, "FeatureStaging::append needs [n, D] features");
  const int64_t n = features.size(0), d = features.size(1);
  RP_CHECK(!slab_.defined() || slab_.size(1) == d, Internal, "FeatureStaging::append: feature width changed");
  for (int64_t done = 0; done < n;) {
    if (!slab_.defined() || used_ == slab_.size(0)) {
      const int64_t elementBytes = static_cast<int64_t>(c10::elementSize(dtype_));
      const int64_t capacity = std::max<int64_t>(1, (kSlabBytes + d * elementBytes - 1) / (d * elementBytes));
      slab_ = newSlab(capacity, d);
      used_ = 0;
      chunks_.emplace_back();
    }
    const int64_t take = std::min(n - done, slab_.size(0) - used_);
    slab_.narrow(0, used_, take).copy_(features.narrow(0, done, take));
    used_ += take;
    done += take;
    chunks_.back() = slab_.narrow(0, 0, used_);
  }
  rows_ += n;
}

std::vector<torch::Tensor> FeatureStaging::take() {
  std::vector<torch::Tensor> out = std::move(chunks_);
  clear();
  return out;
}

void FeatureStaging::clear() {
  chunks_.clear();
  slab_ = torch::Tensor();
  used_ = 0;
  rows_ = 0;
}

}  // namespace rp
