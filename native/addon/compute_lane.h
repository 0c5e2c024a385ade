// One thread per engine that runs all of the engine's native work (create or load, fit, score,
// save), whichever libuv pool thread the call came in on.
//
// Why a thread of its own: libtorch's CPU kernels use OpenMP (libgomp), which keeps a pool of
// workers for every thread that has run a parallel region, and once those pools together hold
// more threads than the machine has cores it stops spinning between regions and puts its workers
// to sleep after each one. libuv hands successive calls to different pool threads, so a second
// pool appeared after the first call and every later region paid a wake-up (bench/NOTES.md,
// "Where a score's time goes"). One engine on one thread keeps one pool. Calls on one engine were
// already serial (its mutex), so nothing that used to run at once now waits; engines still run
// side by side.
#pragma once
#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>

namespace rpn {

class ComputeLane {
 public:
  ComputeLane();
  // Runs what is queued, then joins the thread.
  ~ComputeLane();
  ComputeLane(const ComputeLane&) = delete;
  ComputeLane& operator=(const ComputeLane&) = delete;

  // Runs fn on the lane's thread and waits for it; rethrows what fn threw.
  void run(const std::function<void()>& fn);

 private:
  void loop();

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::packaged_task<void()>> queue_;
  bool stopping_ = false;
  std::thread thread_;
};

using LanePtr = std::shared_ptr<ComputeLane>;

}  // namespace rpn
