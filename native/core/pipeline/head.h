// ReConPatch head (RECONPATCH.md §2): a linear representation f (D -> D) trained with a relaxed
// contrastive loss against pseudo-labels from an EMA partner's pairwise and contextual
// similarities. Only f is used after training: the bank and the test patches become f(p).
#pragma once
#include <torch/torch.h>

#include <atomic>
#include <functional>

#include "core/options.h"

namespace rp {

// --- Pure tensor functions (unit-tested) ---------------------------------------------------

// Squared pairwise distances, clamped at 0. z: [N, d] -> [N, N]
torch::Tensor pairwiseSquaredDistances(const torch::Tensor& z);

// z z^T. Without autograd on the CPU, from its upper block triangle: three (N/2 x N/2 x d)
// products instead of four, the fourth block their transpose. z: [N, d] -> [N, N]
torch::Tensor gramMatrix(const torch::Tensor& z);

// Binary k-NN matrix: row i marks i's k nearest rows, itself always included (ties and
// duplicates cannot push a point out of its own set). d2: [N, N] -> [N, N] float {0, 1}
torch::Tensor knnMatrix(const torch::Tensor& d2, int64_t k);

// Pairwise similarity exp(-|z_i - z_j|^2 / sigma). d2: [N, N], sigma: double or [] -> [N, N]
torch::Tensor pairwiseSimilarity(const torch::Tensor& d2, double sigma);
torch::Tensor pairwiseSimilarity(const torch::Tensor& d2, const torch::Tensor& sigma);

// The pairwise bandwidth taken from the batch (SigmaRule::Knn): the mean over i of the squared
// distance from i to its k-th nearest other point (self-tuning, as spectral clustering sets its
// scale). A k-th neighbour then weighs about exp(-1) and a typical pair about 0, whatever the
// scale of the features; a fixed sigma = 1 on raw 1024-d outputs gives every pair ~0
// (RECONPATCH.md §8). Stays on d2's device (no sync); floored at 1e-12 (a batch of duplicates).
// d2: [N, N] -> [] (0-d)
torch::Tensor kthNeighbourBandwidth(const torch::Tensor& d2, int64_t k);

// Contextual similarity (STML): w~ = (A A^T / k) * A; R = A' * A'^T with A' the floor(k/2)-NN
// matrix (>= 1); w^ = R w~ / rowsum(R); wC = (w^ + w^T) / 2. d2: [N, N] -> [N, N]
// On the CPU computed from the k-NN index lists (A has k ones per row): O(N k^2) instead of two
// dense N x N x N products; equal to the dense form to float32 rounding (the same top-k calls).
// Off the CPU it is the dense form, on the device (no host round trip for the lists).
torch::Tensor contextualSimilarity(const torch::Tensor& d2, int64_t k);
// The same by dense products, as RECONPATCH.md writes it (the reference for tests and the bench).
torch::Tensor contextualSimilarityDense(const torch::Tensor& d2, int64_t k);

// Relaxed contrastive loss. z: [N, d] (with grad), w: [N, N] pseudo-labels -> scalar.
// delta_ij = |z_i - z_j| / mean_n |z_i - z_n|, distances sqrt(max(d2, 0) + 1e-9);
// L = (1/N) sum_ij [ w_ij delta_ij^2 + (1 - w_ij) max(m - delta_ij, 0)^2 ].
// On the CPU the loss and its gradient come from one fused pass per row and the gradient takes
// one N x N x d product (head_loss.cc); elsewhere it is relaxedContrastiveLossAutograd.
torch::Tensor relaxedContrastiveLoss(const torch::Tensor& z, const torch::Tensor& w, double margin);
// The same by tensor operations and autograd (the reference, and the path off the CPU).
torch::Tensor relaxedContrastiveLossAutograd(const torch::Tensor& z, const torch::Tensor& w, double margin);

// --- The trained head ---------------------------------------------------------------------

// The adaptive budget's window (HeadOptions::plateau). Losses are read back at every window end,
// so the stop falls on the same iteration however often they are read otherwise.
constexpr int64_t kPlateauWindow = 32;

struct HeadProgress {
  int64_t iteration;
  int64_t total;
  double loss;
};
using HeadProgressFn = std::function<void(const HeadProgress&)>;

class ReConPatchHead {
 public:
  ReConPatchHead(int64_t dim, const HeadOptions& opts, const torch::Device& device);
  // Restores a trained f (weight [D, D], bias [D]).
  ReConPatchHead(torch::Tensor fWeight, torch::Tensor fBias);

  // Trains on patches sampled from `chunks` ([n_i, D] each, never concatenated). Throws
  // ErrorCode::Aborted when `cancel` is set, ErrorCode::Internal on a non-finite loss. Returns
  // the iterations run (fewer than opts.iterations when the plateau rule stopped it).
  int64_t train(const std::vector<torch::Tensor>& chunks, const HeadProgressFn& progress, const std::atomic<bool>* cancel);

  // f(p). p: [N, D] -> [N, D]
  torch::Tensor apply(const torch::Tensor& p) const;

  const torch::Tensor& fWeight() const { return fW_; }
  const torch::Tensor& fBias() const { return fB_; }

  // One EMA step: partner <- ema * partner + (1 - ema) * current (in place, no grad).
  static void emaUpdate(std::vector<torch::Tensor>& partner, const std::vector<torch::Tensor>& current, double ema);

 private:
  HeadOptions opts_;
  torch::Tensor fW_, fB_, gW_, gB_;  // trained f and g
};

}  // namespace rp
