// Preprocessing on tensors: raw HWC uint8 pixels -> normalised [3, H, W] float batch input.
#pragma once
#include <torch/torch.h>

#include <optional>

#include "core/options.h"
#include "core/raw_image.h"

namespace rp {

struct PreprocessOptions {
  int64_t resize = 256;  // 0: keep the image's size
  int64_t crop = 0;      // 0: no crop (every pixel inspected)
  ResizeMode mode = ResizeMode::Area;
  bool upscale = true;   // false: an image smaller than the target keeps its size
  std::optional<std::array<float, 3>> mean;  // normalisation; none = [0, 1] input (TorchScript contract)
  std::optional<std::array<float, 3>> std;
};

// Where the network input sits in the original image: original -> resized -> crop window.
struct Geometry {
  int64_t origH = 0, origW = 0;
  int64_t resizedH = 0, resizedW = 0;
  int64_t top = 0, left = 0;  // crop window in the resized image
  int64_t cropH = 0, cropW = 0;
};

// Validates the view (throws ErrorCode::InvalidImage) and returns its geometry.
Geometry planGeometry(const RawImageView& img, const PreprocessOptions& opts);

// [3, cropH, cropW] float32 on `device`: RGB in [0,1], resized (bilinear, antialiased),
// center-cropped, then normalised with mean/std when given. Without a crop the resized size is
// even in both directions (the backbone contract) and the window is the whole resized image.
torch::Tensor preprocess(const RawImageView& img, const PreprocessOptions& opts, const torch::Device& device,
                         Geometry* geometry = nullptr);

// Maps a [H, W] map over the crop window back to the original image size [origH, origW]
// (bilinear). Pixels whose centre lies outside the crop window were never inspected: they are
// NaN, never a copy of the nearest inspected value. On the CPU one pass of plain loops;
// tensorForm: the tensor operations other devices run, here on the CPU (for tests).
torch::Tensor mapToOriginal(const torch::Tensor& cropMap, const Geometry& g, bool tensorForm = false);

}  // namespace rp
