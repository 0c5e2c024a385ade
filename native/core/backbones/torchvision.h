// torchvision's ResNet family and DenseNet-201 as libtorch modules whose parameter names are
// torchvision's own ("layer2.0.downsample.1.running_mean", "features.denseblock2.denselayer1.
// norm1.weight"), so torchvision's .pth state dicts load directly. Only the layers up to the
// deepest requested tap are built and loaded; BatchNorm runs in eval mode.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "core/backbones/backbone.h"
#include "core/backbones/catalog.h"

namespace rp {

// "resnet18", "resnet50", "wide_resnet50_2", "wide_resnet101_2", "resnext101_32x8d", "densenet201".
bool isTorchvisionArchitecture(const std::string& name);

// Comma-separated tap names ("layer2,layer3") -> ordered, validated list (ErrorCode::InvalidOption).
// Empty text gives the architecture's default: layer2+layer3, or denseblock2+denseblock3 for DenseNet.
std::vector<std::string> torchvisionTaps(const std::string& arch, const std::string& commaSeparated);

// Builds `arch` up to the deepest of `taps` with weights from the bytes of a .pth state-dict file
// (torchvision's, or the truncated copy a model file embeds). Keys beyond the deepest tap are
// ignored; a missing or mis-shaped key that is needed fails with ErrorCode::Backbone.
// blob() is the truncated state dict (a zip .pth), info().sha256 its SHA-256.
std::unique_ptr<Backbone> makeTorchvisionBackbone(const std::string& arch, const std::vector<std::string>& taps,
                                                  const std::string& weightsBytes, const std::string& label,
                                                  const torch::Device& device);

}  // namespace rp
