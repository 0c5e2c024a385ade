// Exact nearest-neighbour search over a memory bank (faiss-style interface).
#pragma once
#include <torch/torch.h>

#include <memory>
#include <vector>

#include "core/pipeline/knn_int8.h"

namespace rp {

// Which kernel a FlatL2Index uses for k = 1 on the CPU. Auto: int8 with float32 re-scoring where
// the CPU has AVX-512 VNNI and it is not turned off (knn_int8.h), else float32. Float32: always the
// float32 GEMM. Int8: int8 where the CPU has VNNI, whatever the process-wide switch (tests).
enum class KnnKernel { Auto, Float32, Int8 };

// Rows [begin, end) of a bank left out of a search (empty by default): leave-one-image-out
// calibration scores an image's patches against a bank without the rows it contributed.
struct RowRange {
  int64_t begin = 0, end = 0;
};

class KnnIndex {
 public:
  virtual ~KnnIndex() = default;
  virtual int64_t dim() const = 0;
  virtual int64_t ntotal() const = 0;
  // rows: [n, dim]
  virtual void add(const torch::Tensor& rows) = 0;
  // queries: [q, dim] -> squared L2 distances [q, k] ascending, and bank indices [q, k] int64,
  // over the bank without the rows in `exclude` (which must leave at least one row).
  virtual void search(const torch::Tensor& queries, int64_t k, torch::Tensor* distances, torch::Tensor* indices,
                      RowRange exclude = {}) const = 0;
  // The stored rows [ntotal, dim] (for serialisation and Eq. 7 support sets).
  virtual torch::Tensor rows() const = 0;
};

// Brute force by blocked GEMM: |q|^2 - 2 q b^T + |b|^2 over tiles of queryRows x chunkRows,
// each reduced to its k smallest at once, so no large q x ntotal matrix is ever materialised
// (a 1024 x 4096 float tile is 16 MB). For k = 1 on a CPU with VNNI: the int8 search with the
// same result (knn_int8.h); k > 1 (Eq. 7's support sets, a handful of queries) stays float32.
class FlatL2Index : public KnnIndex {
 public:
  explicit FlatL2Index(int64_t dim, int64_t chunkRows = 4096, int64_t queryRows = 1024,
                       KnnKernel kernel = KnnKernel::Auto)
      : dim_(dim), chunkRows_(chunkRows), queryRows_(queryRows), kernel_(kernel) {}
  int64_t dim() const override { return dim_; }
  int64_t ntotal() const override { return bank_.defined() ? bank_.size(0) : 0; }
  void add(const torch::Tensor& rows) override;
  void search(const torch::Tensor& queries, int64_t k, torch::Tensor* distances, torch::Tensor* indices,
              RowRange exclude = {}) const override;
  torch::Tensor rows() const override { return bank_; }
  // Whether k = 1 searches now take the int8 path.
  bool usesInt8() const;

 private:
  int64_t dim_;
  int64_t chunkRows_;
  int64_t queryRows_;
  KnnKernel kernel_;
  // k = 1 through the int8 bank, without the rows in `exclude`; queries it hands back go through
  // nearestBlockCpu.
  void nearestInt8(const torch::Tensor& q, torch::Tensor* distances, torch::Tensor* indices, RowRange exclude) const;
  // The bank's rows outside `exclude`, as up to two [begin, end) spans, in order.
  std::vector<RowRange> spans(RowRange exclude) const;
  // One block of queries against every bank chunk of `spans`. q: [m, dim] -> [m, k] each.
  void searchBlock(const torch::Tensor& q, int64_t k, const std::vector<RowRange>& spans, torch::Tensor* distances,
                   torch::Tensor* indices) const;
  // The same for k = 1 on the CPU: GEMMs into one reused tile, minima on the calling thread.
  void nearestBlockCpu(const torch::Tensor& q, const std::vector<RowRange>& spans, torch::Tensor* distances,
                       torch::Tensor* indices) const;
  torch::Tensor bank_;   // [ntotal, dim] float32
  torch::Tensor norms_;  // [ntotal] squared norms
  std::shared_ptr<const Int8Bank> int8_;  // CPU banks where VNNI is present
};

}  // namespace rp
