// The torchvision architectures the core builds, with their taps (torch-free, for the glue):
// lib/io/weights.ts lists the same, and the two are compared when the addon loads.
#pragma once
#include <string>
#include <vector>

namespace rp {

struct TorchvisionArchitectureInfo {
  std::string name;
  std::vector<std::string> taps;      // finest first
  std::vector<std::string> defaults;  // used when `layers` is empty
};

std::vector<TorchvisionArchitectureInfo> torchvisionCatalog();

}  // namespace rp
