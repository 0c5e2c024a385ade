#include "core/backbones/backbone.h"

#include <torch/cuda.h>
#include <torch/script.h>
#include <torch/version.h>

#include <fstream>
#include <mutex>
#include <sstream>

#include "core/error.h"
#include "core/io/sha256.h"
#include "core/backbones/script_passes.h"
#include "core/backbones/torchvision.h"

namespace F = torch::nn::functional;

namespace rp {

namespace {

// Four 3x3 stride-2 convolutions with ReLU; taps after the third (stride 8) and fourth (stride 16).
// He-normal weights from a private generator: the same seed gives the same network anywhere.
class RandomCnnBackbone : public Backbone {
 public:
  RandomCnnBackbone(uint64_t seed, const torch::Device& device) {
    auto gen = at::make_generator<at::CPUGeneratorImpl>(seed);
    const int64_t widths[5] = {3, 32, 64, 96, 128};
    Sha256 hash;
    for (int i = 0; i < 4; ++i) {
      int64_t cin = widths[i], cout = widths[i + 1];
      auto w = at::normal(0.0, std::sqrt(2.0 / (cin * 9)), {cout, cin, 3, 3}, gen).to(torch::kFloat32);
      hash.update(w.data_ptr(), w.nbytes());
      weights_.push_back(w.to(device));
    }
    auto digest = hash.digest();
    info_.name = "random_cnn";
    info_.strides = {8, 16};
    info_.channels = {widths[3], widths[4]};
    info_.mean = kImagenetMean;
    info_.std = kImagenetStd;
    info_.sha256 = toHex(digest.data(), digest.size());
  }

  BackboneKind kind() const override { return BackboneKind::RandomCnn; }

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override {
    auto conv = [&](const torch::Tensor& in, int i) {
      return F::conv2d(in, weights_[i], F::Conv2dFuncOptions().stride(2).padding(1)).relu_();
    };
    auto t0 = conv(conv(conv(x, 0), 1), 2);  // [B, 96, H/8, W/8]
    auto t1 = conv(t0, 3);                   // [B, 128, H/16, W/16]
    return {t0, t1};
  }

 private:
  std::vector<torch::Tensor> weights_;
};

std::vector<int64_t> intListAttr(torch::jit::Module& m, const char* attr, const std::string& label) {
  RP_CHECK(m.hasattr(attr), Backbone,
           "TorchScript backbone '" << label << "' has no '" << attr
                                    << "' attribute (List[int]); see the backbone contract in the README");
  auto v = m.attr(attr);
  RP_CHECK(v.isIntList(), Backbone, "TorchScript backbone '" << label << "': attribute '" << attr << "' is not a List[int]");
  return v.toIntVector();
}

class TorchScriptBackbone : public Backbone {
 public:
  TorchScriptBackbone(std::string bytes, const std::string& label, const torch::Device& device)
      : bytes_(std::move(bytes)) {
    try {
      std::istringstream in(bytes_);
      module_ = torch::jit::load(in, device);
    } catch (const c10::Error& e) {
      RP_FAIL(Backbone, "cannot load TorchScript backbone '" << label << "': " << e.what_without_backtrace());
    }
    module_.eval();
    info_.strides = intListAttr(module_, "strides", label);
    info_.channels = intListAttr(module_, "channels", label);
    info_.name = module_.hasattr("name") && module_.attr("name").isString() ? module_.attr("name").toStringRef() : label;
    info_.sha256 = sha256Hex(bytes_.data(), bytes_.size());
    RP_CHECK(!info_.strides.empty() && info_.strides.size() == info_.channels.size(), Backbone,
             "TorchScript backbone '" << label << "': 'strides' and 'channels' must be non-empty lists of equal length");
    for (size_t i = 0; i < info_.strides.size(); ++i) {
      RP_CHECK(info_.strides[i] > 0 && info_.channels[i] > 0 && (i == 0 || info_.strides[i] >= info_.strides[i - 1]),
               Backbone, "TorchScript backbone '" << label << "': strides must be positive and increasing (finest first)");
    }
    validate(label, device);
    optimize(device);
  }

  BackboneKind kind() const override { return BackboneKind::TorchScript; }

  std::vector<torch::Tensor> forward(const torch::Tensor& x) override { return run(module_, x, inputFormat_); }

  const std::string& blob() const override { return bytes_; }

 private:
  // The graph passes (script_passes.h) and, on the CPU, channels-last input: oneDNN runs its
  // convolutions on NHWC data as they are, where NCHW costs a reorder in and out of every layer
  // (mobilenet_v1 at 224: 9.0 -> 6.3 ms; bench/NOTES.md). Kept only if the taps equal the loaded
  // module's, up to float rounding, on a seeded random input; otherwise the module runs as loaded.
  void optimize(const torch::Device& device) {
    if (!backbonePassesEnabled()) {
      info_.graphPasses = "none (RECONPATCH_BACKBONE_PASSES=0)";
      return;
    }
    ScriptPassReport report;
    auto optimised = optimizeBackboneScript(module_, &report);
    const auto format = device.is_cpu() ? at::MemoryFormat::ChannelsLast : at::MemoryFormat::Contiguous;
    torch::NoGradGuard noGrad;
    auto gen = at::make_generator<at::CPUGeneratorImpl>(20261206);
    auto x = at::rand({1, 3, 96, 80}, gen).to(device);
    std::string why;
    try {
      auto want = run(module_, x, at::MemoryFormat::Contiguous);
      auto got = run(optimised, x, format);
      if (got.size() != want.size()) why = "tap counts differ";
      for (size_t i = 0; i < want.size() && why.empty(); ++i) {
        if (!got[i].sizes().equals(want[i].sizes())) {
          why = "tap shapes differ";
        } else {
          double scale = want[i].abs().max().item<double>();
          double err = (got[i] - want[i]).abs().max().item<double>() / std::max(scale, 1e-12);
          if (!(err <= 1e-4)) why = "taps differ by " + std::to_string(err) + " relative";
        }
      }
    } catch (const std::exception& e) {
      why = std::string("the optimised module failed: ") + e.what();
    }
    if (!why.empty()) {
      info_.graphPasses = "none (" + why + ")";
      return;
    }
    module_ = optimised;
    inputFormat_ = format;
    info_.graphPasses = report.frozen ? "frozen, " + std::to_string(report.padConvolutions) + " pad+conv2d fused"
                                      : "not frozen (" + report.skippedBecause + ")";
    if (format == at::MemoryFormat::ChannelsLast) info_.graphPasses += ", channels-last input";
  }

  // The module on x in `format`. The taps stay as the module leaves them (channels-last here):
  // the patch features read them through their strides, and the CPU kernel wants NHWC anyway.
  std::vector<torch::Tensor> run(torch::jit::Module& module, const torch::Tensor& x, at::MemoryFormat format) {
    return tapsOf(module, format == at::MemoryFormat::Contiguous ? x : x.contiguous(format));
  }

  std::vector<torch::Tensor> tapsOf(torch::jit::Module& module, const torch::Tensor& x) {
    torch::jit::IValue out;
    try {
      out = module.forward({x});
    } catch (const c10::Error& e) {
      RP_FAIL(Backbone, "TorchScript backbone '" << info_.name << "' failed: " << e.what_without_backtrace());
    }
    std::vector<torch::Tensor> taps;
    if (out.isTensorList()) {
      taps = out.toTensorVector();
    } else if (out.isList()) {
      for (const auto& v : out.toListRef()) {
        RP_CHECK(v.isTensor(), Backbone, "TorchScript backbone '" << info_.name << "' must return List[Tensor]");
        taps.push_back(v.toTensor());
      }
    } else if (out.isTuple()) {
      for (const auto& v : out.toTupleRef().elements()) {
        RP_CHECK(v.isTensor(), Backbone, "TorchScript backbone '" << info_.name << "' must return List[Tensor]");
        taps.push_back(v.toTensor());
      }
    } else {
      RP_FAIL(Backbone, "TorchScript backbone '" << info_.name << "' must return List[Tensor], got " << out.tagKind());
    }
    return taps;
  }

  // One small forward pass checks the declared strides/channels against what the module returns.
  void validate(const std::string& label, const torch::Device& device) {
    torch::NoGradGuard noGrad;
    const int64_t side = 64;
    auto taps = forward(torch::zeros({1, 3, side, side}, torch::TensorOptions().device(device)));
    RP_CHECK(taps.size() == info_.strides.size(), Backbone,
             "TorchScript backbone '" << label << "' returned " << taps.size() << " feature maps but declares "
                                      << info_.strides.size() << " strides");
    for (size_t i = 0; i < taps.size(); ++i) {
      const auto& t = taps[i];
      int64_t expect = (side + info_.strides[i] - 1) / info_.strides[i];
      RP_CHECK(t.dim() == 4 && t.size(1) == info_.channels[i], Backbone,
               "TorchScript backbone '" << label << "': feature map " << i << " has shape " << t.sizes()
                                        << " but 'channels' declares " << info_.channels[i]);
      RP_CHECK(t.size(2) == expect || t.size(2) == side / info_.strides[i], Backbone,
               "TorchScript backbone '" << label << "': feature map " << i << " has shape " << t.sizes()
                                        << " but 'strides' declares " << info_.strides[i] << " for a " << side
                                        << "x" << side << " input");
    }
  }

  std::string bytes_;
  torch::jit::Module module_;
  at::MemoryFormat inputFormat_ = at::MemoryFormat::Contiguous;
};

// PyTorch 2.x tries NNPACK for some CPU convolutions and, on CPUs it does not support (these AMD
// machines), logs "Could not initialize NNPACK! Reason: Unsupported hardware." on every try: one
// line per layer per image on the user's stderr. oneDNN runs those convolutions either way.
void keepNnpackQuiet() {
#if TORCH_VERSION_MAJOR >= 2
  static std::once_flag once;
  std::call_once(once, [] { at::globalContext().setUserEnabledNNPACK(false); });
#endif
}

std::string readFile(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  RP_CHECK(in, Backbone, "cannot open " << what << " '" << path << "'");
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

}  // namespace

std::unique_ptr<Backbone> makeBackbone(const EngineOptions& o, const torch::Device& device) {
  keepNnpackQuiet();
  if (o.backbone == "random_cnn") return std::make_unique<RandomCnnBackbone>(o.seed, device);
  if (isTorchvisionArchitecture(o.backbone)) {
    RP_CHECK(!o.weights.empty(), Backbone, "backbone '" << o.backbone << "' needs a weights file");
    return makeTorchvisionBackbone(o.backbone, torchvisionTaps(o.backbone, o.layers), readFile(o.weights, "weights file"),
                                   o.weights, device);
  }
  return std::make_unique<TorchScriptBackbone>(readFile(o.backbone, "backbone file"), o.backbone, device);
}

std::unique_ptr<Backbone> restoreBackbone(BackboneKind kind, const EngineOptions& o, std::string blob,
                                          const std::string& label, const torch::Device& device) {
  keepNnpackQuiet();
  switch (kind) {
    case BackboneKind::RandomCnn:
      RP_CHECK(o.backbone == "random_cnn", ModelFile, label << " names backbone '" << o.backbone << "' but does not contain it");
      return std::make_unique<RandomCnnBackbone>(o.seed, device);
    case BackboneKind::TorchScript:
      return std::make_unique<TorchScriptBackbone>(std::move(blob), label, device);
    case BackboneKind::Torchvision:
      RP_CHECK(isTorchvisionArchitecture(o.backbone), ModelFile,
               label << " holds torchvision weights for an unknown architecture '" << o.backbone << "'");
      return makeTorchvisionBackbone(o.backbone, torchvisionTaps(o.backbone, o.layers), blob, label, device);
  }
  RP_FAIL(ModelFile, label << " has an unknown backbone kind");
}

torch::Device resolveDevice(const std::string& name) {
  if (name == "cpu") return torch::kCPU;
  bool cuda = torch::cuda::is_available();
  if (name == "auto") return cuda ? torch::Device(torch::kCUDA) : torch::Device(torch::kCPU);
  RP_CHECK(name == "cuda", InvalidOption, "device must be 'cpu', 'cuda' or 'auto', got '" << name << "'");
#ifdef RECONPATCH_CUDA
  RP_CHECK(cuda, DeviceUnavailable,
           "device 'cuda' was requested but no CUDA device is visible to this CUDA build of reconpatch; "
           "check the NVIDIA driver (nvidia-smi) and CUDA_VISIBLE_DEVICES, or use device: 'cpu' or 'auto'");
#else
  RP_CHECK(cuda, DeviceUnavailable,
           "device 'cuda' was requested but this build of reconpatch is CPU-only (compiled against a libtorch "
           "without CUDA); use device: 'cpu' or 'auto', or rebuild against a CUDA libtorch (README: CUDA and devices)");
#endif
  return torch::Device(torch::kCUDA);
}

}  // namespace rp
