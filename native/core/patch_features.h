// PatchCore patch features (RECONPATCH.md §1.3-1.5), with the reference's primitives in the
// reference's order so parity with PyTorch is exact.
#pragma once
#include <torch/torch.h>

#include <vector>

namespace rp {

struct PatchGrid {
  int64_t height = 0;  // grid of the first (finest) tap
  int64_t width = 0;
};

// taps: [B, C_i, h_i, w_i], finest first -> [B, h_0 * w_0, targetDim] (row-major grid).
// Per tap: 3x3 neighbourhoods (unfold, zero padding 1); coarser taps resized bilinearly to the
// first tap's grid; each patch's C*9 values adaptive-average-pooled to pretrainDim; the taps'
// vectors concatenated and pooled to targetDim.
torch::Tensor patchFeatures(const std::vector<torch::Tensor>& taps, int64_t patchSize, int64_t pretrainDim,
                            int64_t targetDim, PatchGrid* grid = nullptr);

}  // namespace rp
