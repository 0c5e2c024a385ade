#include "core/device_context.h"

#ifdef RECONPATCH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include <optional>

namespace rp {

#ifdef RECONPATCH_CUDA
struct EngineStream::Impl {
  std::optional<c10::cuda::CUDAStream> stream;  // none on the CPU
};

namespace {
struct CudaScope : EngineStream::Scope {
  explicit CudaScope(const c10::cuda::CUDAStream& s) : guard(s) {}
  c10::cuda::CUDAStreamGuard guard;
};
}  // namespace

EngineStream::EngineStream(const torch::Device& device) : impl_(std::make_unique<Impl>()) {
  if (device.is_cuda()) impl_->stream = c10::cuda::getStreamFromPool(/*isHighPriority=*/false, device.index() < 0 ? 0 : device.index());
}

std::unique_ptr<EngineStream::Scope> EngineStream::enter() const {
  if (!impl_->stream) return std::make_unique<Scope>();
  return std::make_unique<CudaScope>(*impl_->stream);
}

torch::Tensor uploadToDevice(const torch::Tensor& host, const torch::Device& device) {
  if (!device.is_cuda()) return host.to(device);
  auto pinned = torch::empty(host.sizes(), host.options().pinned_memory(true));
  pinned.copy_(host);
  return pinned.to(device, /*non_blocking=*/true);
}
#else
struct EngineStream::Impl {};

EngineStream::EngineStream(const torch::Device&) : impl_(std::make_unique<Impl>()) {}

std::unique_ptr<EngineStream::Scope> EngineStream::enter() const { return std::make_unique<Scope>(); }

torch::Tensor uploadToDevice(const torch::Tensor& host, const torch::Device& device) { return host.to(device); }
#endif

EngineStream::~EngineStream() = default;

}  // namespace rp
