// Patch features of a fit in progress, appended batch by batch into large slabs.
//
// Staged features are most of a fit's memory (gigabytes on large training sets). Kept as one
// tensor per batch (a few MiB each), they sat in malloc's arenas between the batches'
// temporaries, and the freed gaps stayed resident (bench/NOTES.md, "Fit memory"). A slab of at
// least 64 MiB is above malloc's mmap threshold (core/memory.h), so it is its own mapping: pages
// never written cost nothing, and a released slab goes back to the kernel whole.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace rp {

class FeatureStaging {
 public:
  FeatureStaging(torch::ScalarType dtype, torch::Device device) : dtype_(dtype), device_(device) {}

  // features: [n, D] -> copied, converted to the staging dtype, after the rows staged so far.
  void append(const torch::Tensor& features);

  // Hands over the staged rows in order, one [m_i, D] view per slab, and empties the staging:
  // the caller owns the slabs and can release each (or replace it by, e.g., the head's
  // projection) as soon as it is done with it.
  std::vector<torch::Tensor> take();

  int64_t rows() const { return rows_; }

  // Releases every slab.
  void clear();

 private:
  static constexpr int64_t kSlabBytes = int64_t{64} << 20;
  torch::Tensor newSlab(int64_t capacity, int64_t d) const;  // [capacity, D], uninitialised
  torch::ScalarType dtype_;
  torch::Device device_;
  torch::Tensor slab_;  // [capacity, D], the slab being filled
  int64_t used_ = 0;    // rows of slab_ in use
  int64_t rows_ = 0;
  std::vector<torch::Tensor> chunks_;
};

}  // namespace rp
