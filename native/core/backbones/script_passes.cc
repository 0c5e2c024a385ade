#include "core/backbones/script_passes.h"

#include <ATen/core/dispatch/Dispatcher.h>
#include <torch/csrc/jit/passes/dead_code_elimination.h>
#include <torch/csrc/jit/passes/subgraph_rewrite.h>
#include <torch/library.h>

#include <cstdlib>
#include <cstring>

namespace rp {

namespace {

// F.pad(x, pad, mode, value) then conv2d(.., padding): one convolution with its own padding when
// the pad is a symmetric zero pad of the last two dims and the convolution pads nothing itself;
// otherwise exactly the two ops. TF-style "same" padding is symmetric for every stride-1 layer,
// so in the shared backbones only the stride-2 layers keep the explicit pad.
torch::Tensor padConv2d(const torch::Tensor& x, c10::IntArrayRef pad, c10::string_view mode, c10::optional<double> value,
                        const torch::Tensor& weight, const c10::optional<torch::Tensor>& bias, c10::IntArrayRef stride,
                        c10::IntArrayRef padding, c10::IntArrayRef dilation, int64_t groups) {
  const bool zeroPad = mode == "constant" && (!value.has_value() || *value == 0.0);
  const bool convPadsNothing = padding.size() == 2 && padding[0] == 0 && padding[1] == 0;
  // pad = (left, right, top, bottom) for [N, C, H, W].
  if (zeroPad && convPadsNothing && x.dim() == 4 && pad.size() == 4 && pad[0] == pad[1] && pad[2] == pad[3] &&
      pad[0] >= 0 && pad[2] >= 0) {
    return at::conv2d(x, weight, bias, stride, {pad[2], pad[0]}, dilation, groups);
  }
  return at::conv2d(at::pad(x, pad, mode, value), weight, bias, stride, padding, dilation, groups);
}

// Registered on first use, not at load: a static TORCH_LIBRARY would std::terminate the process
// at load if two copies of the addon (two installs of the package) registered the namespace.
// Another copy's registration is used as it is; a failure only skips the pad rewrite.
bool padConv2dRegistered() {
  static const bool registered = [] {
    try {
      if (c10::Dispatcher::singleton().findSchema({"reconpatch::pad_conv2d", ""}).has_value()) return true;
      // Never destroyed: the op stays registered while any module that uses it may run.
      auto* library = new torch::Library(torch::Library::FRAGMENT, "reconpatch", c10::nullopt, __FILE__, __LINE__);
      library->def(
          "pad_conv2d(Tensor x, int[] pad, str mode, float? value, Tensor weight, Tensor? bias, int[] stride, "
          "int[] padding, int[] dilation, int groups) -> Tensor",
          TORCH_FN(padConv2d));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  return registered;
}

const char* kPadConvPattern = R"IR(
graph(%x, %pad, %mode, %value, %w, %b, %stride, %padding, %dilation, %groups):
  %p = aten::pad(%x, %pad, %mode, %value)
  %r = aten::conv2d(%p, %w, %b, %stride, %padding, %dilation, %groups)
  return (%r))IR";

const char* kPadConvReplacement = R"IR(
graph(%x, %pad, %mode, %value, %w, %b, %stride, %padding, %dilation, %groups):
  %r = reconpatch::pad_conv2d(%x, %pad, %mode, %value, %w, %b, %stride, %padding, %dilation, %groups)
  return (%r))IR";

int countNodes(const std::shared_ptr<torch::jit::Graph>& graph, const char* kind) {
  int n = 0;
  for (auto* node : graph->nodes()) n += std::strcmp(node->kind().toQualString(), kind) == 0;
  return n;
}

}  // namespace

bool backbonePassesEnabled() {
  const char* env = std::getenv("RECONPATCH_BACKBONE_PASSES");
  return !(env && std::strcmp(env, "0") == 0);
}

torch::jit::Module optimizeBackboneScript(const torch::jit::Module& module, ScriptPassReport* report) {
  ScriptPassReport local;
  ScriptPassReport& r = report ? *report : local;
  r = ScriptPassReport{};
  try {
    // freeze: attributes become constants and the frozen-graph passes fold conv -> mul -> add
    // (and conv -> BatchNorm) into the convolution's weight and bias.
    auto frozen = torch::jit::freeze(module, c10::nullopt, /*optimize_numerics=*/true);
    r.frozen = true;
    auto graph = frozen.get_method("forward").graph();
    if (padConv2dRegistered()) {
      torch::jit::SubgraphRewriter rewriter;
      rewriter.RegisterRewritePattern(kPadConvPattern, kPadConvReplacement);
      rewriter.runOnGraph(graph);
      torch::jit::EliminateDeadCode(graph);
    }
    r.padConvolutions = countNodes(graph, "reconpatch::pad_conv2d");
    return frozen;
  } catch (const std::exception& e) {
    r = ScriptPassReport{};
    r.skippedBecause = std::string("freezing failed: ") + e.what();
    return module;
  }
}

}  // namespace rp
