// Frozen feature extractors. A Backbone maps [B, 3, H, W] images to feature maps ("taps"),
// finest stride first. Implementations: TorchScript files (../shared/backbones contract) and a
// small seeded random CNN so everything runs without weight files.
#pragma once
#include <torch/torch.h>

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/options.h"

namespace rp {

struct BackboneInfo {
  std::string name;               // "random_cnn", or the TorchScript module's `name`
  std::vector<int64_t> strides;   // per tap, increasing
  std::vector<int64_t> channels;  // per tap
  // Input normalisation the engine applies; none = the module takes RGB in [0, 1].
  std::optional<std::array<float, 3>> mean, std;
  std::string sha256;             // identity of the weights
};

class Backbone {
 public:
  virtual ~Backbone() = default;
  const BackboneInfo& info() const { return info_; }
  // x: [B, 3, H, W] (normalised per info()) -> taps: [B, C_i, H / s_i, W / s_i]
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& x) = 0;
  // Bytes to embed in a model file so it is self-contained (empty: rebuilt from options).
  virtual const std::string& serialized() const { return empty_; }

 protected:
  BackboneInfo info_;

 private:
  std::string empty_;
};

// "random_cnn" -> RandomCnnBackbone(seed); a torchvision architecture name -> that network with the
// weights file `options.weights` and taps `options.layers`; anything else is read as a TorchScript
// file path.
std::unique_ptr<Backbone> makeBackbone(const EngineOptions& options, const torch::Device& device);

// TorchScript module from its serialized bytes; validates attributes and output shapes.
std::unique_ptr<Backbone> loadTorchScriptBackbone(std::string bytes, const std::string& label,
                                                  const torch::Device& device);

bool isBuiltinBackbone(const std::string& name);

// "cpu" | "cuda" | "auto" -> a device; throws ErrorCode::DeviceUnavailable for CUDA without it.
torch::Device resolveDevice(const std::string& name);

}  // namespace rp
