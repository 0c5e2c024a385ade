// Exact nearest-neighbour search over a memory bank (faiss-style interface).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace rp {

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
// (a 1024 x 4096 float tile is 16 MB).
class FlatL2Index : public KnnIndex {
 public:
  explicit FlatL2Index(int64_t dim, int64_t chunkRows = 4096, int64_t queryRows = 1024)
      : dim_(dim), chunkRows_(chunkRows), queryRows_(queryRows) {}
  int64_t dim() const override { return dim_; }
  int64_t ntotal() const override { return bank_.defined() ? bank_.size(0) : 0; }
  void add(const torch::Tensor& rows) override;
  void search(const torch::Tensor& queries, int64_t k, torch::Tensor* distances, torch::Tensor* indices,
              RowRange exclude = {}) const override;
  torch::Tensor rows() const override { return bank_; }

 private:
  int64_t dim_;
  int64_t chunkRows_;
  int64_t queryRows_;
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
};

}  // namespace rp
