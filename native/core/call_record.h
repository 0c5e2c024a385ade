// Which engine calls are running, kept where a fatal-signal handler can read it.
//
// A small process-wide table of slots, one per engine call in flight, updated with atomics only
// (no locks, no allocation): rp::Engine's entry points claim a slot for their duration and name
// their stages in it; the crash handler (addon/crash_handler.cc) reads the table from inside a
// signal handler, where only lock-free reads are safe. Torch-free, so the addon can include it.
#pragma once
#include <atomic>
#include <cstdint>

namespace rp::calls {

constexpr int kSlots = 32;         // calls beyond this many at once are simply not recorded
constexpr int kLabelBytes = 96;    // engine description, truncated

struct Slot {
  std::atomic<int> state{0};                 // 0 free, 1 being claimed, 2 active (readable)
  std::atomic<uint64_t> engine{0};           // rp::Engine id (1, 2, ... in creation order)
  std::atomic<const char*> operation{nullptr};  // string literal: "score", "fitEnd", ...
  std::atomic<const char*> stage{nullptr};      // string literal or null
  std::atomic<int64_t> item{-1}, items{-1};  // the call's input being processed (-1: none)
  std::atomic<int64_t> done{-1}, total{-1};  // progress inside the stage (-1: none)
  std::atomic<int64_t> thread{0};            // kernel thread id of the caller
  char label[kLabelBytes] = {};              // written while claimed, read-only while active
};

// The table (kSlots entries). For the crash handler: read a slot only while state == 2.
const Slot* slots();

// Claims a slot for one engine call on this thread; releases it on destruction. Scopes nest
// (an inner one becomes the thread's current call until it ends).
class Scope {
 public:
  Scope(uint64_t engine, const char* operation, const char* label);
  ~Scope();
  Scope(const Scope&) = delete;
  Scope& operator=(const Scope&) = delete;

 private:
  Slot* slot_;
  Slot* outer_;
};

// Names the stage of this thread's current call (a string literal) and resets its progress.
// A no-op outside a Scope.
void stage(const char* name);
// Progress inside the stage: step `done` of `total` (head iterations, coreset selections).
void progress(int64_t done, int64_t total);
// The input this call is working on: image `i` (1-based) of `n`. Kept across stages.
void item(int64_t i, int64_t n);

// Test probes only (native/probes/): called on every stage() with the call's engine, operation
// and the new stage, and with stage "" when a recorded call starts and nullptr when it ends.
// Null by default; one relaxed load per stage when unset.
using StageHook = void (*)(uint64_t engine, const char* operation, const char* stage);
void setStageHook(StageHook hook);

}  // namespace rp::calls
