// PNG row filters (PNG specification, section 9) undone for 8-bit, non-interlaced images, the
// pixels written as RGB. The rest of the decode (chunks, CRCs, inflate) is lib/io/png.ts's: this
// is the one byte loop that is slow in JavaScript (~2 ms for a 512² RGB image on the event loop,
// ~0.3 ms here on a pool thread).
#pragma once
#include <cstddef>
#include <cstdint>

namespace rp {

// filtered: `height` rows of [filter type, width * channels bytes]; channels 1 (grey), 2
// (grey+alpha), 3 (RGB) or 4 (RGBA). out: width * height * 3 bytes, RGB (grey repeated, alpha
// dropped). False when a row's filter type is not 0-4 or the sizes do not add up; out is then
// undefined.
bool unfilterPngToRgb(const uint8_t* filtered, size_t filteredSize, int64_t width, int64_t height, int channels,
                      uint8_t* out, size_t outSize);

}  // namespace rp
