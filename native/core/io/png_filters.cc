#include "core/io/png_filters.h"

#include <cstdlib>
#include <utility>
#include <vector>

namespace rp {

namespace {

inline uint8_t paethPredictor(int a, int b, int c) {
  const int pa = std::abs(b - c);
  const int pb = std::abs(a - c);
  const int pc = std::abs(a + b - 2 * c);
  return static_cast<uint8_t>(pa <= pb && pa <= pc ? a : pb <= pc ? b : c);
}

// One row: line (filtered) -> row, given the row above (zeros for the first).
bool unfilterRow(int type, const uint8_t* line, const uint8_t* above, uint8_t* row, size_t stride, size_t bpp) {
  switch (type) {
    case 0:
      for (size_t i = 0; i < stride; ++i) row[i] = line[i];
      return true;
    case 1:
      for (size_t i = 0; i < bpp; ++i) row[i] = line[i];
      for (size_t i = bpp; i < stride; ++i) row[i] = static_cast<uint8_t>(line[i] + row[i - bpp]);
      return true;
    case 2:
      for (size_t i = 0; i < stride; ++i) row[i] = static_cast<uint8_t>(line[i] + above[i]);
      return true;
    case 3:
      for (size_t i = 0; i < bpp; ++i) row[i] = static_cast<uint8_t>(line[i] + (above[i] >> 1));
      for (size_t i = bpp; i < stride; ++i) row[i] = static_cast<uint8_t>(line[i] + ((row[i - bpp] + above[i]) >> 1));
      return true;
    case 4:
      for (size_t i = 0; i < bpp; ++i) row[i] = static_cast<uint8_t>(line[i] + above[i]);
      for (size_t i = bpp; i < stride; ++i) {
        row[i] = static_cast<uint8_t>(line[i] + paethPredictor(row[i - bpp], above[i], above[i - bpp]));
      }
      return true;
    default:
      return false;
  }
}

}  // namespace

bool unfilterPngToRgb(const uint8_t* filtered, size_t filteredSize, int64_t width, int64_t height, int channels,
                      uint8_t* out, size_t outSize) {
  if (width < 1 || height < 1 || channels < 1 || channels > 4) return false;
  const size_t w = static_cast<size_t>(width), h = static_cast<size_t>(height), bpp = static_cast<size_t>(channels);
  // The caller's sizes come from a header it checked against the pixel limits (at most 2^26
  // pixels by default): these products cannot overflow 64 bits.
  const size_t stride = w * bpp;
  if (filteredSize != h * (stride + 1) || outSize != w * h * 3) return false;
  std::vector<uint8_t> rows(2 * stride, 0);
  uint8_t* above = rows.data();  // zeros: the row above the first
  uint8_t* row = rows.data() + stride;
  for (size_t y = 0; y < h; ++y) {
    const uint8_t* line = filtered + y * (stride + 1);
    if (!unfilterRow(line[0], line + 1, above, row, stride, bpp)) return false;
    uint8_t* o = out + y * w * 3;
    if (bpp == 3) {
      for (size_t i = 0; i < stride; ++i) o[i] = row[i];
    } else if (bpp == 4) {
      for (size_t p = 0; p < w; ++p) o[3 * p] = row[4 * p], o[3 * p + 1] = row[4 * p + 1], o[3 * p + 2] = row[4 * p + 2];
    } else {
      for (size_t p = 0; p < w; ++p) o[3 * p] = o[3 * p + 1] = o[3 * p + 2] = row[bpp * p];
    }
    std::swap(above, row);
  }
  return true;
}

}  // namespace rp
