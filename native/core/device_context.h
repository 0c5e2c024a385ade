// Where an engine's device work runs. On CUDA each engine has a stream of its own (engines in
// different worker threads then overlap instead of queueing on the default stream), and frames go
// to the device through pinned host memory, asynchronously on that stream. On the CPU all of this
// is a no-op.
#pragma once
#include <torch/torch.h>

#include <memory>

namespace rp {

class EngineStream {
 public:
  explicit EngineStream(const torch::Device& device);
  ~EngineStream();
  EngineStream(const EngineStream&) = delete;
  EngineStream& operator=(const EngineStream&) = delete;

  // While the returned object lives, this engine's stream is the calling thread's current stream.
  struct Scope {
    virtual ~Scope() = default;
  };
  std::unique_ptr<Scope> enter() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// A host tensor on `device`: on CUDA copied through pinned memory, asynchronously on the current
// stream (the pinned buffer is kept until the copy is done by libtorch's host allocator); a plain
// copy elsewhere.
torch::Tensor uploadToDevice(const torch::Tensor& host, const torch::Device& device);

}  // namespace rp
