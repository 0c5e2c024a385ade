// Frozen feature extractors. A Backbone maps [B, 3, H, W] images to feature maps ("taps"),
// finest stride first. Implementations: TorchScript files (../shared/backbones contract) and a
// small seeded random CNN so everything runs without weight files.
#pragma once
#include <torch/torch.h>

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/options.h"

namespace rp {

// ImageNet's per-channel normalisation, which every backbone here was trained with.
inline constexpr std::array<float, 3> kImagenetMean = {0.485f, 0.456f, 0.406f};
inline constexpr std::array<float, 3> kImagenetStd = {0.229f, 0.224f, 0.225f};

struct BackboneInfo {
  std::string name;               // "random_cnn", or the TorchScript module's `name`
  std::vector<int64_t> strides;   // per tap, increasing
  std::vector<int64_t> channels;  // per tap
  // Input normalisation the engine applies; none = the module takes RGB in [0, 1].
  std::optional<std::array<float, 3>> mean, std;
  std::string sha256;             // identity of the weights
  std::string graphPasses;        // TorchScript only: what script_passes.h did to the module, or why not
};

// How a backbone is made, and so how a model file restores it.
enum class BackboneKind {
  RandomCnn,    // rebuilt from the options (seed); no bytes
  TorchScript,  // the TorchScript file's bytes
  Torchvision,  // the architecture's weights up to the deepest tap, as a zip .pth state dict
};

class Backbone {
 public:
  virtual ~Backbone() = default;
  const BackboneInfo& info() const { return info_; }
  virtual BackboneKind kind() const = 0;
  // x: [B, 3, H, W] (normalised per info()) -> taps: [B, C_i, H / s_i, W / s_i], in any memory
  // layout (a TorchScript backbone on the CPU gives channels-last)
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& x) = 0;
  // The bytes a model file carries so that restoreBackbone() needs no other file (empty for
  // kinds rebuilt from the options). info().sha256 identifies them.
  virtual const std::string& blob() const { return empty_; }

 protected:
  BackboneInfo info_;

 private:
  std::string empty_;
};

// From the options and files on disk: "random_cnn" -> the seeded random CNN; a torchvision
// architecture name -> that network with the weights file `options.weights` and taps
// `options.layers`; anything else is read as a TorchScript file path.
std::unique_ptr<Backbone> makeBackbone(const EngineOptions& options, const torch::Device& device);

// From a model file: the kind, the options it was fitted with and blob() of the backbone then.
// `label` names the source in errors.
std::unique_ptr<Backbone> restoreBackbone(BackboneKind kind, const EngineOptions& options, std::string blob,
                                          const std::string& label, const torch::Device& device);

// "cpu" | "cuda" | "auto" -> a device; throws ErrorCode::DeviceUnavailable for CUDA without it.
torch::Device resolveDevice(const std::string& name);

}  // namespace rp
