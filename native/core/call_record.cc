#include "core/call_record.h"

#include <sys/syscall.h>
#include <unistd.h>

#include <cstring>

namespace rp::calls {

namespace {

Slot table[kSlots];
std::atomic<StageHook> stageHook{nullptr};
thread_local Slot* current = nullptr;

int64_t threadId() { return static_cast<int64_t>(::syscall(SYS_gettid)); }

}  // namespace

const Slot* slots() { return table; }

Scope::Scope(uint64_t engine, const char* operation, const char* label) : slot_(nullptr), outer_(current) {
  for (auto& s : table) {
    int expected = 0;
    if (!s.state.compare_exchange_strong(expected, 1, std::memory_order_acquire)) continue;
    s.engine.store(engine, std::memory_order_relaxed);
    s.operation.store(operation, std::memory_order_relaxed);
    s.stage.store(nullptr, std::memory_order_relaxed);
    s.item.store(-1, std::memory_order_relaxed);
    s.items.store(-1, std::memory_order_relaxed);
    s.done.store(-1, std::memory_order_relaxed);
    s.total.store(-1, std::memory_order_relaxed);
    s.thread.store(threadId(), std::memory_order_relaxed);
    std::strncpy(s.label, label ? label : "", kLabelBytes - 1);
    s.label[kLabelBytes - 1] = '\0';
    s.state.store(2, std::memory_order_release);  // publishes the fields above
    slot_ = &s;
    current = &s;
    if (StageHook hook = stageHook.load(std::memory_order_relaxed)) hook(engine, operation, "");
    return;
  }
}

Scope::~Scope() {
  if (!slot_) return;
  if (StageHook hook = stageHook.load(std::memory_order_relaxed))
    hook(slot_->engine.load(std::memory_order_relaxed), slot_->operation.load(std::memory_order_relaxed), nullptr);
  current = outer_;
  slot_->state.store(0, std::memory_order_release);
}

void stage(const char* name) {
  Slot* s = current;
  if (!s) return;
  s->stage.store(name, std::memory_order_relaxed);
  s->done.store(-1, std::memory_order_relaxed);
  s->total.store(-1, std::memory_order_relaxed);
  if (StageHook hook = stageHook.load(std::memory_order_relaxed))
    hook(s->engine.load(std::memory_order_relaxed), s->operation.load(std::memory_order_relaxed), name);
}

void progress(int64_t done, int64_t total) {
  Slot* s = current;
  if (!s) return;
  s->done.store(done, std::memory_order_relaxed);
  s->total.store(total, std::memory_order_relaxed);
}

void item(int64_t i, int64_t n) {
  Slot* s = current;
  if (!s) return;
  s->item.store(i, std::memory_order_relaxed);
  s->items.store(n, std::memory_order_relaxed);
}

void setStageHook(StageHook hook) { stageHook.store(hook); }

}  // namespace rp::calls
