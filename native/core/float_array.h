// A row-major float array with its shape: how features cross to JS (embed) and how the probes
// take and return tensors, without torch types (no torch here).
#pragma once
#include <cstdint>
#include <vector>

namespace rp {

struct FloatArray {
  std::vector<float> data;
  std::vector<int64_t> shape;
};

}  // namespace rp
