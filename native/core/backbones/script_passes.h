// Graph passes that make a TorchScript backbone cheaper to run without changing what it computes
// beyond float rounding: freezing (weights become constants, so a convolution followed by a
// per-channel multiply and add, a BatchNorm written out by hand, folds into the convolution's
// weight and bias), then an explicit zero padding that feeds a convolution becomes the
// convolution's own padding where it is symmetric. The backbone also feeds the module
// channels-last input on the CPU (backbone.cc). Measured in bench/NOTES.md ("Where a score's time
// goes").
#pragma once
#include <torch/script.h>

#include <string>

namespace rp {

struct ScriptPassReport {
  bool frozen = false;         // torch::jit::freeze succeeded (a module it cannot freeze runs as loaded)
  int padConvolutions = 0;     // pad -> conv2d pairs rewritten to reconpatch::pad_conv2d
  std::string skippedBecause;  // why the module is not frozen, when it is not
};

// False when the environment variable RECONPATCH_BACKBONE_PASSES is "0": the module runs as loaded,
// with contiguous input (to compare, or to rule the passes out).
bool backbonePassesEnabled();

// An eval-mode module -> a module whose forward computes the same taps. Never throws: a pass that
// fails leaves the module as loaded and says why in the report. The caller checks
// backbonePassesEnabled() first.
torch::jit::Module optimizeBackboneScript(const torch::jit::Module& module, ScriptPassReport* report);

}  // namespace rp
