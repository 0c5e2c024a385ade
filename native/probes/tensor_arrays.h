// Shared by the probes: FloatArray <-> tensor copies and one step through the core's exception
// boundary without autograd.
#pragma once
#include <torch/torch.h>

#include "core/error.h"
#include "core/float_array.h"
#include "core/guarded.h"

namespace rp::internals {

inline torch::Tensor toTensor(const FloatArray& a) {
  int64_t n = 1;
  for (auto d : a.shape) n *= d;
  RP_CHECK(n == static_cast<int64_t>(a.data.size()), InvalidOption,
           "array has " << a.data.size() << " values but its shape needs " << n);
  return torch::from_blob(const_cast<float*>(a.data.data()), a.shape, torch::kFloat32).clone();
}

inline FloatArray fromTensor(const torch::Tensor& t) {
  auto c = t.to(torch::kCPU).to(torch::kFloat32).contiguous();
  FloatArray a;
  a.shape = c.sizes().vec();
  a.data.assign(c.data_ptr<float>(), c.data_ptr<float>() + c.numel());
  return a;
}

// One pipeline step, without autograd, through the core's exception boundary.
template <class Fn>
auto step(Fn&& fn) -> decltype(fn()) {
  return guarded([&] {
    torch::NoGradGuard noGrad;
    return fn();
  });
}


}  // namespace rp::internals
