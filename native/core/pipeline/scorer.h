// From per-patch nearest-neighbour distances to image scores and anomaly maps (RECONPATCH.md §3).
#pragma once
#include <torch/torch.h>

#include "core/pipeline/flat_l2_index.h"

namespace rp {

// Image score = max patch score. patchScores: [B, L] -> [B]
torch::Tensor maxImageScores(const torch::Tensor& patchScores);

// PatchCore Eq. 7: the max patch score s* weighted by 1 - softmax over the Euclidean distances
// from that test patch to the b nearest bank neighbours of its nearest bank row m* (m* first).
// patchScores, nnIndex: [B, L]; queries: [B, L, D] -> [B]. The neighbours are searched in the bank
// without `exclude` (leave-one-image-out calibration).
torch::Tensor reweightedImageScores(const torch::Tensor& patchScores, const torch::Tensor& nnIndex,
                                    const torch::Tensor& queries, const KnnIndex& bank, int64_t neighbours,
                                    RowRange exclude = {});

// 1-D Gaussian taps as scipy.ndimage.gaussian_filter: radius = int(4 sigma + 0.5). -> [2r+1]
torch::Tensor gaussianKernel1d(double sigma);

// scipy.ndimage.gaussian_filter(map, sigma) with mode 'reflect' (d c b a | a b c d), any size.
// maps: [B, H, W] -> [B, H, W]. On the CPU plain loops; tensorForm: the tensor operations other
// devices run, here on the CPU (for tests).
torch::Tensor gaussianBlur(const torch::Tensor& maps, double sigma, bool tensorForm = false);

// Patch-score grid -> bilinear upsample to (outH, outW) -> Gaussian blur.
// grid: [B, h, w] -> [B, outH, outW]
torch::Tensor anomalyMaps(const torch::Tensor& grid, int64_t outH, int64_t outW, double sigma);

}  // namespace rp
