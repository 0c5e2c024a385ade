#include "core/pipeline/image.h"

#include "core/device_context.h"

#include <cmath>

#include "core/error.h"

namespace F = torch::nn::functional;

namespace rp {

Geometry planGeometry(const RawImageView& img, const PreprocessOptions& opts) {
  RP_CHECK(img.data != nullptr, InvalidImage, "image has no pixel data");
  RP_CHECK(img.channels == 1 || img.channels == 3, InvalidImage,
           "image must have 1 (grey) or 3 (RGB) channels, got " << img.channels);
  RP_CHECK(img.width >= 8 && img.height >= 8, InvalidImage,
           "image is too small (" << img.width << "x" << img.height << "); at least 8x8 pixels are needed");
  Geometry g;
  g.origH = img.height;
  g.origW = img.width;
  if (opts.resize <= 0) {
    g.resizedH = img.height;
    g.resizedW = img.width;
  } else if (opts.mode == ResizeMode::Squash) {
    g.resizedH = g.resizedW = opts.resize;
  } else {
    // torchvision Resize(int): the shorter side becomes `resize`, the longer is scaled and floored.
    if (img.height <= img.width) {
      g.resizedH = opts.resize;
      g.resizedW = static_cast<int64_t>(opts.resize * img.width / static_cast<double>(img.height));
    } else {
      g.resizedW = opts.resize;
      g.resizedH = static_cast<int64_t>(opts.resize * img.height / static_cast<double>(img.width));
    }
  }
  if (opts.crop > 0) {
    RP_CHECK(opts.crop <= g.resizedH && opts.crop <= g.resizedW, InvalidImage,
             "crop " << opts.crop << " is larger than the resized image (" << g.resizedW << "x" << g.resizedH << ")");
    g.cropH = g.cropW = opts.crop;
    // torchvision CenterCrop: int(round((size - crop) / 2)).
    g.top = static_cast<int64_t>(std::round((g.resizedH - opts.crop) / 2.0));
    g.left = static_cast<int64_t>(std::round((g.resizedW - opts.crop) / 2.0));
  } else {
    // Without crop the whole resized image is used, floored to an even size (the backbone
    // contract takes any even size).
    const int64_t m = 2;
    g.cropH = g.resizedH / m * m;
    g.cropW = g.resizedW / m * m;
    RP_CHECK(g.cropH > 0 && g.cropW > 0, InvalidImage,
             "image is too small after resizing (" << g.resizedW << "x" << g.resizedH << ")");
    g.top = (g.resizedH - g.cropH) / 2;
    g.left = (g.resizedW - g.cropW) / 2;
  }
  return g;
}

torch::Tensor preprocess(const RawImageView& img, const PreprocessOptions& opts, const torch::Device& device,
                         Geometry* geometry) {
  Geometry g = planGeometry(img, opts);
  if (geometry) *geometry = g;
  // [H, W, C] uint8 view (no copy) -> [1, 3, H, W] float in [0, 1] on the device.
  auto hwc = torch::from_blob(const_cast<uint8_t*>(img.data), {img.height, img.width, img.channels}, torch::kUInt8);
  auto x = uploadToDevice(hwc, device).permute({2, 0, 1}).to(torch::kFloat32).div_(255.0f).unsqueeze(0);
  if (img.channels == 1) x = x.expand({1, 3, img.height, img.width});
  if (g.resizedH != img.height || g.resizedW != img.width) {
    x = F::interpolate(x, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{g.resizedH, g.resizedW})
                              .mode(torch::kBilinear)
                              .align_corners(false)
                              .antialias(true));
  }
  x = x.narrow(2, g.top, g.cropH).narrow(3, g.left, g.cropW);
  if (opts.mean && opts.std) {
    auto mean = torch::tensor({(*opts.mean)[0], (*opts.mean)[1], (*opts.mean)[2]}, x.options()).view({1, 3, 1, 1});
    auto std = torch::tensor({(*opts.std)[0], (*opts.std)[1], (*opts.std)[2]}, x.options()).view({1, 3, 1, 1});
    x = (x - mean) / std;
  }
  return x.squeeze(0).contiguous();  // [3, cropH, cropW]
}

torch::Tensor mapToOriginal(const torch::Tensor& cropMap, const Geometry& g) {
  // cropMap: [cropH, cropW] -> [origH, origW]
  auto m = cropMap.view({1, 1, g.cropH, g.cropW});
  int64_t bottom = g.resizedH - g.top - g.cropH;
  int64_t right = g.resizedW - g.left - g.cropW;
  if (g.top || g.left || bottom || right) {
    m = F::pad(m, F::PadFuncOptions({g.left, right, g.top, bottom}).mode(torch::kReplicate));
  }
  if (g.resizedH != g.origH || g.resizedW != g.origW) {
    m = F::interpolate(m, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{g.origH, g.origW})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  return m.view({g.origH, g.origW});
}

}  // namespace rp
