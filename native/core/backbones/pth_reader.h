// Reads PyTorch state-dict files (`torch.save(model.state_dict())`) without Python: both the zip
// format (torch >= 1.6) and the older "legacy" format that torchvision's early weight files use.
// libtorch's own torch::pickle_load cannot do this: it turns collections.OrderedDict into None.
#pragma once
#include <torch/torch.h>

#include <string>
#include <utility>
#include <vector>

namespace rp {

// Parameter name -> tensor, in file order.
using StateDict = std::vector<std::pair<std::string, torch::Tensor>>;

// Parses the bytes of a .pth file holding a dict of tensors. Only the pickle subset that state
// dicts use is understood (dicts, tuples, lists, strings, numbers, tensor rebuilds); anything
// else fails with ErrorCode::Backbone naming `label`.
StateDict parseStateDict(const std::string& bytes, const std::string& label);

// The bytes of a zip-format .pth holding `dict` (what torch.save writes; torch.load reads it).
std::string serializeStateDict(const StateDict& dict);

}  // namespace rp
