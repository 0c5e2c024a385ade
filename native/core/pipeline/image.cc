#include "core/pipeline/image.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "core/device_context.h"
#include "core/error.h"
#include "core/pipeline/bilinear.h"

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
  // Never above the image's own pixels: more pixels than the camera gave add no detail (measured:
  // magnetic_tile loses AUROC when scaled up, docs/results.md "Resolution and tiling").
  if (!opts.upscale && g.resizedH * g.resizedW > img.height * img.width) {
    g.resizedH = img.height;
    g.resizedW = img.width;
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

namespace {

// The CPU form of mapToOriginal below, in one pass over the output with no temporaries: the
// tensor form's padding, resize and masks allocated and wrote the full-size map ~6 times (~2.5 ms
// of a 224-px score of a 512-px image; bench/NOTES.md).
torch::Tensor mapToOriginalCpu(const torch::Tensor& cropMap, const Geometry& g) {
  auto in = cropMap.contiguous();
  const float* src = in.data_ptr<float>();
  auto out = torch::empty({g.origH, g.origW}, torch::kFloat32);
  float* dst = out.data_ptr<float>();
  // The crop window padded by replication to the resized size, then resized to the original.
  const bool resize = g.resizedH != g.origH || g.resizedW != g.origW;
  const auto ys = bilinearTaps(g.resizedH, g.origH), xs = bilinearTaps(g.resizedW, g.origW);
  auto inside = [](int64_t o, int64_t n, int64_t resized, int64_t lo, int64_t len) {
    const double centre = (static_cast<double>(o) + 0.5) * (static_cast<double>(resized) / static_cast<double>(n));
    return centre >= static_cast<double>(lo) && centre < static_cast<double>(lo + len);
  };
  std::vector<char> colInside(g.origW);
  for (int64_t x = 0; x < g.origW; ++x) colInside[x] = inside(x, g.origW, g.resizedW, g.left, g.cropW);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  at::parallel_for(0, g.origH, 16, [&](int64_t begin, int64_t end) {
    auto crop = [&](int64_t i, int64_t lo, int64_t len) { return std::clamp<int64_t>(i - lo, 0, len - 1); };
    for (int64_t y = begin; y < end; ++y) {
      float* d = dst + y * g.origW;
      if (!inside(y, g.origH, g.resizedH, g.top, g.cropH)) {
        std::fill(d, d + g.origW, nan);
        continue;
      }
      const BilinearTap ty = resize ? ys[y] : BilinearTap{y, y, 1.0f, 0.0f};
      const float* r0 = src + crop(ty.i0, g.top, g.cropH) * g.cropW;
      const float* r1 = src + crop(ty.i1, g.top, g.cropH) * g.cropW;
      for (int64_t x = 0; x < g.origW; ++x) {
        if (!colInside[x]) {
          d[x] = nan;
          continue;
        }
        const BilinearTap tx = resize ? xs[x] : BilinearTap{x, x, 1.0f, 0.0f};
        const int64_t c0 = crop(tx.i0, g.left, g.cropW), c1 = crop(tx.i1, g.left, g.cropW);
        d[x] = ty.w0 * (tx.w0 * r0[c0] + tx.w1 * r0[c1]) + ty.w1 * (tx.w0 * r1[c0] + tx.w1 * r1[c1]);
      }
    }
  });
  return out;
}

}  // namespace

torch::Tensor mapToOriginal(const torch::Tensor& cropMap, const Geometry& g, bool tensorForm) {
  // cropMap: [cropH, cropW] -> [origH, origW]
  if (!tensorForm && cropMap.device().is_cpu() && cropMap.scalar_type() == torch::kFloat32) return mapToOriginalCpu(cropMap, g);
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
