// PatchCore patch features (RECONPATCH.md §1.3-1.5), equal to the reference's up to float
// rounding (parity tests: relative error < 1e-5).
#pragma once
#include <torch/torch.h>

#include <vector>

namespace rp {

struct PatchGrid {
  int64_t height = 0;  // grid of the first (finest) tap
  int64_t width = 0;
};

// Auto: a fused CPU kernel for CPU tensors, tensor operations elsewhere. Tensor: tensor
// operations everywhere (the tests compare the two).
enum class PatchFeaturesPath { Auto, Tensor };

// taps: [B, C_i, h_i, w_i], finest first -> [B, h_0 * w_0, targetDim] (row-major grid).
// Per tap: k x k neighbourhoods (unfold, zero padding k/2, k odd), each patch's C*k*k values
// adaptive-average-pooled to pretrainDim, coarser taps resized bilinearly to the first tap's
// grid; the taps' vectors concatenated and pooled to targetDim.
torch::Tensor patchFeatures(const std::vector<torch::Tensor>& taps, int64_t patchSize, int64_t pretrainDim,
                            int64_t targetDim, PatchGrid* grid = nullptr,
                            PatchFeaturesPath path = PatchFeaturesPath::Auto);

}  // namespace rp
