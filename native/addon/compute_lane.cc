#include "addon/compute_lane.h"

#include <utility>

#include "addon/crash_handler.h"

namespace rpn {

ComputeLane::ComputeLane() : thread_([this] { loop(); }) {}

ComputeLane::~ComputeLane() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_one();
  if (thread_.get_id() == std::this_thread::get_id()) thread_.detach();  // not expected: owners live on the JS thread
  else thread_.join();
}

void ComputeLane::run(const std::function<void()>& fn) {
  std::packaged_task<void()> task(fn);
  auto done = task.get_future();
  {
    std::lock_guard<std::mutex> lock(mutex_);
    queue_.push_back(std::move(task));
  }
  wake_.notify_one();
  done.get();  // rethrows fn's exception on the calling thread
}

void ComputeLane::loop() {
  ensureAltSignalStack();  // a crash report even for a stack overflow on this thread
  for (;;) {
    std::packaged_task<void()> task;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stopping, nothing left
      task = std::move(queue_.front());
      queue_.pop_front();
    }
    task();
  }
}

}  // namespace rpn
