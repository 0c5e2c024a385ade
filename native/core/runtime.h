// What this addon was built against and what it finds at run time (torch-free header).
#pragma once
#include <string>

namespace rp {

struct RuntimeInfo {
  std::string torchVersion;  // libtorch's headers at build time, "2.14.1"
  bool cudaBuild = false;    // compiled against a CUDA libtorch
  int cudaDevices = 0;       // CUDA devices visible now (0 on a CPU build)
  long cxxStandard = 0;      // __cplusplus of the build
};

RuntimeInfo runtimeInfo();

// libtorch's version at build time ("2.14.1"): runtimeInfo().torchVersion without asking CUDA.
std::string torchVersion();

}  // namespace rp
