#include "core/backbones/torchvision.h"

#include <algorithm>
#include <map>
#include <regex>
#include <sstream>

#include "core/error.h"
#include "core/io/sha256.h"
#include "core/backbones/pth_reader.h"

namespace F = torch::nn::functional;

namespace rp {

namespace {

struct Architecture {
  bool dense = false;                 // DenseNet, else ResNet
  bool bottleneck = false;            // ResNet: Bottleneck (expansion 4) or BasicBlock
  std::vector<int64_t> blocks;        // blocks per stage (ResNet) / dense layers per block (DenseNet)
  int64_t groups = 1, widthPerGroup = 64;
};

const std::map<std::string, Architecture>& architectures() {
  static const std::map<std::string, Architecture> kArchs = {
      {"resnet18", {false, false, {2, 2, 2, 2}}},
      {"resnet50", {false, true, {3, 4, 6, 3}}},
      {"wide_resnet50_2", {false, true, {3, 4, 6, 3}, 1, 128}},
      {"wide_resnet101_2", {false, true, {3, 4, 23, 3}, 1, 128}},
      {"resnext101_32x8d", {false, true, {3, 4, 23, 3}, 32, 8}},
      {"densenet201", {true, false, {6, 12, 48, 32}}},
  };
  return kArchs;
}

const Architecture& architecture(const std::string& name) {
  auto it = architectures().find(name);
  RP_CHECK(it != architectures().end(), InvalidOption, "unknown torchvision architecture '" << name << "'");
  return it->second;
}

std::string stageName(const Architecture& a, int stage) {  // stage 1..4
  return (a.dense ? "denseblock" : "layer") + std::to_string(stage);
}

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t kernel, int64_t stride = 1, int64_t padding = 0, int64_t groups = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, kernel).stride(stride).padding(padding).groups(groups).bias(false));
}

torch::nn::BatchNorm2d norm(int64_t channels) { return torch::nn::BatchNorm2d(channels); }  // eps 1e-5, as torchvision

// ---- ResNet ----------------------------------------------------------------------------------

// torchvision.models.resnet.BasicBlock / Bottleneck (stride on the 3x3 convolution: "ResNet V1.5").
struct ResidualBlockImpl : torch::nn::Module {
  ResidualBlockImpl(const Architecture& a, int64_t inplanes, int64_t planes, int64_t stride) {
    const int64_t expansion = a.bottleneck ? 4 : 1;
    if (a.bottleneck) {
      const int64_t width = planes * a.widthPerGroup / 64 * a.groups;
      conv1 = register_module("conv1", conv(inplanes, width, 1));
      bn1 = register_module("bn1", norm(width));
      conv2 = register_module("conv2", conv(width, width, 3, stride, 1, a.groups));
      bn2 = register_module("bn2", norm(width));
      conv3 = register_module("conv3", conv(width, planes * expansion, 1));
      bn3 = register_module("bn3", norm(planes * expansion));
    } else {
      conv1 = register_module("conv1", conv(inplanes, planes, 3, stride, 1));
      bn1 = register_module("bn1", norm(planes));
      conv2 = register_module("conv2", conv(planes, planes, 3, 1, 1));
      bn2 = register_module("bn2", norm(planes));
    }
    if (stride != 1 || inplanes != planes * expansion)
      downsample = register_module("downsample", torch::nn::Sequential(conv(inplanes, planes * expansion, 1, stride),
                                                                      norm(planes * expansion)));
  }

  torch::Tensor forward(const torch::Tensor& x) {
    auto out = bn1(conv1(x)).relu_();
    out = bn2(conv2(out));
    if (conv3) out = bn3(conv3(out.relu_()));
    out += downsample ? downsample->forward(x) : x;
    return out.relu_();
  }

  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr}, conv3{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr}, bn2{nullptr}, bn3{nullptr};
  torch::nn::Sequential downsample{nullptr};
};
TORCH_MODULE(ResidualBlock);

// torchvision.models.ResNet without avgpool/fc, and without the stages after `stages`.
struct ResNetImpl : torch::nn::Module {
  ResNetImpl(const Architecture& a, int stages) {
    conv1 = register_module("conv1", conv(3, 64, 7, 2, 3));
    bn1 = register_module("bn1", norm(64));
    int64_t inplanes = 64;
    const int64_t expansion = a.bottleneck ? 4 : 1;
    for (int s = 1; s <= stages; ++s) {
      const int64_t planes = 64 << (s - 1);
      torch::nn::Sequential layer;
      for (int64_t b = 0; b < a.blocks[s - 1]; ++b) {
        layer->push_back(ResidualBlock(a, inplanes, planes, b == 0 && s > 1 ? 2 : 1));
        inplanes = planes * expansion;
      }
      layers.push_back(register_module("layer" + std::to_string(s), layer));
      channels.push_back(inplanes);
    }
  }

  // x: [B, 3, H, W] -> stage outputs [B, C_s, H / 2^(s+1), W / 2^(s+1)], s = 1..stages
  std::vector<torch::Tensor> forward(torch::Tensor x) {
    x = F::max_pool2d(bn1(conv1(x)).relu_(), F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    std::vector<torch::Tensor> out;
    for (auto& layer : layers) out.push_back(x = layer->forward(x));
    return out;
  }

  torch::nn::Conv2d conv1{nullptr};
  torch::nn::BatchNorm2d bn1{nullptr};
  std::vector<torch::nn::Sequential> layers;
  std::vector<int64_t> channels;  // per stage
};

// ---- DenseNet --------------------------------------------------------------------------------

constexpr int64_t kGrowth = 32, kBottleneckSize = 4, kInitFeatures = 64;

// torchvision.models.densenet._DenseLayer: BN-ReLU-1x1 conv, BN-ReLU-3x3 conv -> kGrowth channels.
struct DenseLayerImpl : torch::nn::Module {
  explicit DenseLayerImpl(int64_t in) {
    norm1 = register_module("norm1", norm(in));
    conv1 = register_module("conv1", conv(in, kBottleneckSize * kGrowth, 1));
    norm2 = register_module("norm2", norm(kBottleneckSize * kGrowth));
    conv2 = register_module("conv2", conv(kBottleneckSize * kGrowth, kGrowth, 3, 1, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) { return conv2(norm2(conv1(norm1(x).relu_())).relu_()); }

  torch::nn::BatchNorm2d norm1{nullptr}, norm2{nullptr};
  torch::nn::Conv2d conv1{nullptr}, conv2{nullptr};
};
TORCH_MODULE(DenseLayer);

// _DenseBlock: each layer sees the concatenation of the block input and every earlier layer's output.
struct DenseBlockImpl : torch::nn::Module {
  DenseBlockImpl(int64_t in, int64_t count) {
    for (int64_t i = 0; i < count; ++i)
      layers.push_back(register_module("denselayer" + std::to_string(i + 1), DenseLayer(in + i * kGrowth)));
  }
  // x: [B, C, h, w] -> [B, C + count * kGrowth, h, w]
  torch::Tensor forward(const torch::Tensor& x) {
    std::vector<torch::Tensor> features = {x};
    for (auto& layer : layers) features.push_back(layer->forward(torch::cat(features, 1)));
    return torch::cat(features, 1);
  }
  std::vector<DenseLayer> layers;
};
TORCH_MODULE(DenseBlock);

// _Transition: BN-ReLU-1x1 conv halving the channels, 2x2 average pooling.
struct TransitionImpl : torch::nn::Module {
  TransitionImpl(int64_t in, int64_t out) {
    norm_ = register_module("norm", norm(in));
    conv_ = register_module("conv", conv(in, out, 1));
  }
  torch::Tensor forward(const torch::Tensor& x) {
    return F::avg_pool2d(conv_(norm_(x).relu_()), F::AvgPool2dFuncOptions(2).stride(2));
  }
  torch::nn::BatchNorm2d norm_{nullptr};
  torch::nn::Conv2d conv_{nullptr};
};
TORCH_MODULE(Transition);

// torchvision.models.DenseNet's `features` up to denseblock<stages>; a tap is the dense block's
// output (as PatchCore's `features.denseblockN`), before the following transition.
struct DenseNetImpl : torch::nn::Module {
  DenseNetImpl(const Architecture& a, int stages) {
    features = register_module("features", std::make_shared<torch::nn::Module>("features"));
    conv0 = features->register_module("conv0", conv(3, kInitFeatures, 7, 2, 3));
    norm0 = features->register_module("norm0", norm(kInitFeatures));
    int64_t c = kInitFeatures;
    for (int s = 1; s <= stages; ++s) {
      if (s > 1) {
        transitions.push_back(features->register_module("transition" + std::to_string(s - 1), Transition(c, c / 2)));
        c /= 2;
      }
      blocks.push_back(features->register_module("denseblock" + std::to_string(s), DenseBlock(c, a.blocks[s - 1])));
      c += a.blocks[s - 1] * kGrowth;
      channels.push_back(c);
    }
  }

  // x: [B, 3, H, W] -> dense block outputs [B, C_s, H / 2^(s+1), W / 2^(s+1)]
  std::vector<torch::Tensor> forward(torch::Tensor x) {
    x = F::max_pool2d(norm0(conv0(x)).relu_(), F::MaxPool2dFuncOptions(3).stride(2).padding(1));
    std::vector<torch::Tensor> out;
    for (size_t s = 0; s < blocks.size(); ++s) {
      if (s > 0) x = transitions[s - 1]->forward(x);
      out.push_back(x = blocks[s]->forward(x));
    }
    return out;
  }

  std::shared_ptr<torch::nn::Module> features;
  torch::nn::Conv2d conv0{nullptr};
  torch::nn::BatchNorm2d norm0{nullptr};
  std::vector<DenseBlock> blocks;
  std::vector<Transition> transitions;
  std::vector<int64_t> channels;
};

// torchvision's DenseNet files from 2017 name "denselayer1.norm.1.weight" what the module calls
// "denselayer1.norm1.weight" (torchvision renames them the same way when loading).
std::string modernKey(const std::string& key) {
  static const std::regex kOld(R"(^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$)");
  std::smatch m;
  return std::regex_match(key, m, kOld) ? m[1].str() + m[2].str() : key;
}

bool isBatchCounter(const std::string& key) {
  const std::string suffix = "num_batches_tracked";
  return key.size() >= suffix.size() && key.compare(key.size() - suffix.size(), suffix.size(), suffix) == 0;
}

class TorchvisionBackbone : public Backbone {
 public:
  TorchvisionBackbone(const std::string& arch, const std::vector<std::string>& taps, const std::string& bytes,
                      const std::string& label, const torch::Device& device) {
    const Architecture& a = architecture(arch);
    int stages = 0;
    for (int s = 1; s <= 4; ++s) {
      if (std::find(taps.begin(), taps.end(), stageName(a, s)) != taps.end()) {
        tapStages_.push_back(s - 1);
        stages = s;
      }
    }
    RP_CHECK(!tapStages_.empty() && tapStages_.size() == taps.size(), InvalidOption,
             "invalid taps for " << arch << "; choose from " << stageName(a, 1) << " to " << stageName(a, 4));
    std::vector<int64_t> stageChannels;
    if (a.dense) {
      auto net = std::make_shared<DenseNetImpl>(a, stages);
      stageChannels = net->channels;
      module_ = net;
      forward_ = [net](const torch::Tensor& x) { return net->forward(x); };
    } else {
      auto net = std::make_shared<ResNetImpl>(a, stages);
      stageChannels = net->channels;
      module_ = net;
      forward_ = [net](const torch::Tensor& x) { return net->forward(x); };
    }
    serialized_ = loadWeights(arch, bytes, label);
    module_->eval();
    module_->to(device);
    info_.name = arch;
    for (int s : tapStages_) {
      info_.strides.push_back(int64_t{4} << s);
      info_.channels.push_back(stageChannels[s]);
    }
    info_.mean = kImagenetMean;
    info_.std = kImagenetStd;
    info_.sha256 = sha256Hex(serialized_.data(), serialized_.size());
  }

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override {
    auto stages = forward_(x);
    std::vector<torch::Tensor> taps;
    for (int s : tapStages_) taps.push_back(stages[s]);
    return taps;
  }

  BackboneKind kind() const override { return BackboneKind::Torchvision; }
  const std::string& blob() const override { return serialized_; }

 private:
  // Copies every parameter and running statistic the truncated module has from the file; returns
  // those tensors as a zip .pth (the model file embeds it).
  std::string loadWeights(const std::string& arch, const std::string& bytes, const std::string& label) {
    std::map<std::string, torch::Tensor> file;
    for (auto& [key, t] : parseStateDict(bytes, label)) file[modernKey(key)] = t;
    StateDict used;
    torch::NoGradGuard noGrad;
    auto assign = [&](const std::string& name, torch::Tensor& target) {
      if (isBatchCounter(name)) return;  // unused in eval mode; older files lack it
      auto it = file.find(name);
      RP_CHECK(it != file.end(), Backbone,
               "weights file '" << label << "' lacks '" << name << "', which " << arch
                                << " needs; is it torchvision's " << arch << " state dict?");
      RP_CHECK(it->second.sizes() == target.sizes(), Backbone,
               "weights file '" << label << "': '" << name << "' has shape " << it->second.sizes() << " but " << arch
                                << " needs " << target.sizes() << "; is it torchvision's " << arch << " state dict?");
      RP_CHECK(it->second.is_floating_point(), Backbone,
               "weights file '" << label << "': '" << name << "' is not a floating-point tensor");
      target.copy_(it->second.to(torch::kFloat32));
      used.emplace_back(name, target);
    };
    for (auto& p : module_->named_parameters(true)) assign(p.key(), p.value());
    for (auto& b : module_->named_buffers(true)) assign(b.key(), b.value());
    return serializeStateDict(used);
  }

  std::shared_ptr<torch::nn::Module> module_;
  std::function<std::vector<torch::Tensor>(const torch::Tensor&)> forward_;
  std::vector<int> tapStages_;  // 0-based stage per tap, increasing
  std::string serialized_;
};

}  // namespace

bool isTorchvisionArchitecture(const std::string& name) { return architectures().count(name) > 0; }

std::vector<TorchvisionArchitectureInfo> torchvisionCatalog() {
  std::vector<TorchvisionArchitectureInfo> out;
  for (const auto& [name, a] : architectures()) {
    TorchvisionArchitectureInfo info{name, {}, {stageName(a, 2), stageName(a, 3)}};
    for (int s = 1; s <= 4; ++s) info.taps.push_back(stageName(a, s));
    out.push_back(std::move(info));
  }
  return out;
}

std::vector<std::string> torchvisionTaps(const std::string& arch, const std::string& commaSeparated) {
  const Architecture& a = architecture(arch);
  if (commaSeparated.empty()) return {stageName(a, 2), stageName(a, 3)};
  std::vector<std::string> requested;
  std::stringstream in(commaSeparated);
  for (std::string name; std::getline(in, name, ',');) requested.push_back(name);
  std::vector<std::string> taps;  // finest first
  for (int s = 1; s <= 4; ++s)
    if (std::find(requested.begin(), requested.end(), stageName(a, s)) != requested.end()) taps.push_back(stageName(a, s));
  RP_CHECK(taps.size() == requested.size(), InvalidOption,
           "layers '" << commaSeparated << "' are not distinct taps of " << arch << "; choose from " << stageName(a, 1)
                      << " to " << stageName(a, 4));
  return taps;
}

std::unique_ptr<Backbone> makeTorchvisionBackbone(const std::string& arch, const std::vector<std::string>& taps,
                                                  const std::string& weightsBytes, const std::string& label,
                                                  const torch::Device& device) {
  return std::make_unique<TorchvisionBackbone>(arch, taps, weightsBytes, label, device);
}

}  // namespace rp
