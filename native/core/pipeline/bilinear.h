// Bilinear resampling along one axis (align_corners = false, as F.interpolate): the two source
// cells of each output cell and their weights. Shared by the patch features' resize and the map
// back to the original size.
#pragma once
#include <algorithm>
#include <cstdint>
#include <vector>

namespace rp {

struct BilinearTap {
  int64_t i0, i1;  // source cells (equal at the clamped end)
  float w0, w1;    // their weights: 1 - lambda, lambda
};

// -> outSize taps over inSize cells; the source coordinate in float, clamped at 0, as ATen's.
inline std::vector<BilinearTap> bilinearTaps(int64_t inSize, int64_t outSize) {
  std::vector<BilinearTap> taps(outSize);
  const float scale = static_cast<float>(inSize) / static_cast<float>(outSize);
  for (int64_t o = 0; o < outSize; ++o) {
    const float src = std::max(0.0f, scale * (o + 0.5f) - 0.5f);
    const int64_t i0 = std::min(static_cast<int64_t>(src), inSize - 1);
    const int64_t i1 = std::min(i0 + 1, inSize - 1);
    const float lambda = src - static_cast<float>(i0);
    taps[o] = {i0, i1, 1.0f - lambda, lambda};
  }
  return taps;
}

}  // namespace rp
