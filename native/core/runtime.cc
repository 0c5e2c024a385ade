#include "core/runtime.h"

#include <torch/cuda.h>
#include <torch/version.h>

namespace rp {

std::string torchVersion() {
  return std::to_string(TORCH_VERSION_MAJOR) + "." + std::to_string(TORCH_VERSION_MINOR) + "." +
         std::to_string(TORCH_VERSION_PATCH);
}

RuntimeInfo runtimeInfo() {
  RuntimeInfo r;
  r.torchVersion = torchVersion();
#ifdef RECONPATCH_CUDA
  r.cudaBuild = true;
#endif
  r.cudaDevices = static_cast<int>(torch::cuda::device_count());
  r.cxxStandard = __cplusplus;
  return r;
}

}  // namespace rp
