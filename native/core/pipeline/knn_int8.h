// Exact nearest neighbours (k = 1) at int8 speed on CPUs with AVX-512 VNNI.
//
// The bank is quantised to uint8 per row, the queries to int8 per row; a VNNI kernel gives every
// pair an approximate squared distance and a proven bound on how far the float32 search's value
// can be from it (knn_int8.cc derives it). Rows whose lower bound is above the smallest upper bound
// cannot be the float32 search's answer; the few that can are re-scored in float32. The result is
// the float32 exact search's (the same row, or on ties within float32 rounding an equally near one).
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <vector>

namespace rp {

// The CPU runs AVX-512 VNNI (checked at run time; false off x86-64).
bool knnInt8Supported();
// Supported and not turned off: RECONPATCH_KNN=float32 in the environment at load, or
// setKnnInt8Enabled(false) (tests and the bench force the float32 path this way).
bool knnInt8Enabled();
void setKnnInt8Enabled(bool enabled);

// Process-wide counters of int8 searches, for the bench: queries searched, bank rows re-scored in
// float32, queries handed to the float32 GEMM because too many rows stayed candidates.
struct KnnInt8Counters {
  int64_t queries = 0, rescored = 0, fallbackQueries = 0;
};
KnnInt8Counters knnInt8Counters();
void resetKnnInt8Counters();

// A bank quantised for the kernel: uint8 rows packed in 16-row panels, and per row the terms of
// the error bound. Holds references to the float32 rows and norms for re-scoring.
class Int8Bank {
 public:
  // bank: [n, D] float32 contiguous CPU; norms: [n] its squared norms, the very values the float32
  // search uses. usable() is false if the bank holds non-finite values.
  Int8Bank(const torch::Tensor& bank, const torch::Tensor& norms);
  bool usable() const { return usable_; }
  // q: [m, D] float32 contiguous CPU -> squared distances [m, 1] (clamped at 0) and indices [m, 1],
  // over the bank without rows [excludeBegin, excludeEnd) (leave-one-image-out; empty: every row).
  // Queries the int8 pass cannot settle cheaply (non-finite values, or too many candidate rows)
  // are listed in *fallback; their rows of the outputs are left for the caller's float32 search.
  void nearest(const torch::Tensor& q, torch::Tensor* distances, torch::Tensor* indices,
               std::vector<int64_t>* fallback, int64_t excludeBegin = 0, int64_t excludeEnd = 0) const;
  // Bytes held beside the float32 bank.
  int64_t bytes() const;

 private:
  int64_t n_ = 0, dim_ = 0, dim4_ = 0, panels_ = 0;
  bool usable_ = false;
  double kappa_ = 0;          // rounding allowance per (|q| + |b|)^2, see knn_int8.cc
  torch::Tensor packed_;      // [panels, dim4 / 4, 16, 4] uint8
  torch::Tensor rowTerms_;    // [6, panels * 16] float32: lo, step, |r_b|, |b~|, |b'|^2, 2 kappa (|b|^2 + |b'|^2)
  torch::Tensor mean_;        // [D] float32: mu, taken from bank rows and queries before quantising
  torch::Tensor bank_, norms_;
};

}  // namespace rp
