// A borrowed view of raw pixels, shared by the core and the N-API glue (no torch here).
#pragma once
#include <cstdint>

namespace rp {

// Row-major HWC uint8, channels 1 (grey) or 3 (RGB), no padding.
struct RawImageView {
  const uint8_t* data = nullptr;
  int64_t width = 0;
  int64_t height = 0;
  int64_t channels = 0;
};

}  // namespace rp
