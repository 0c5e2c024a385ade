#include "core/pipeline/image.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "core/device_context.h"
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
  } else if (opts.mode == ResizeMode::Area) {
    // About resize^2 pixels with the image's own aspect ratio: the feature grid follows the image,
    // and the bank grows with the pixel budget, not with how long or narrow the part is.
    const double scale = opts.resize / std::sqrt(static_cast<double>(img.height) * img.width);
    g.resizedH = std::max<int64_t>(2, 2 * std::llround(img.height * scale / 2));
    g.resizedW = std::max<int64_t>(2, 2 * std::llround(img.width * scale / 2));
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
    // Without crop the whole image is the window: an odd size is resized to the even size below
    // it (the backbone contract takes any even size) rather than cropped, so no pixel is lost.
    g.resizedH = g.resizedH / 2 * 2;
    g.resizedW = g.resizedW / 2 * 2;
    RP_CHECK(g.resizedH > 0 && g.resizedW > 0, InvalidImage,
             "image is too small after resizing (" << g.resizedW << "x" << g.resizedH << ")");
    g.cropH = g.resizedH;
    g.cropW = g.resizedW;
    g.top = g.left = 0;
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
  const bool cropped = g.top || g.left || bottom || right;
  // Replicated only so that the interpolation has neighbours at the window's edge; every pixel
  // these values reach outside the window is set to NaN below.
  if (cropped) m = F::pad(m, F::PadFuncOptions({g.left, right, g.top, bottom}).mode(torch::kReplicate));
  if (g.resizedH != g.origH || g.resizedW != g.origW) {
    m = F::interpolate(m, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{g.origH, g.origW})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  m = m.view({g.origH, g.origW});
  if (!cropped) return m;
  // An original pixel was inspected when its centre, in resized coordinates, falls in the window.
  auto inside = [&](int64_t n, int64_t resized, int64_t lo, int64_t len) {
    auto centre = (torch::arange(n, m.options()) + 0.5) * (static_cast<double>(resized) / n);
    return centre.ge(static_cast<double>(lo)).logical_and(centre.lt(static_cast<double>(lo + len)));
  };
  auto rows = inside(g.origH, g.resizedH, g.top, g.cropH).unsqueeze(1);   // [H, 1]
  auto cols = inside(g.origW, g.resizedW, g.left, g.cropW).unsqueeze(0);  // [1, W]
  return m.masked_fill(rows.logical_and(cols).logical_not(), std::numeric_limits<float>::quiet_NaN());
}

}  // namespace rp
