#include "probes/stage_timer.h"

#include <chrono>
#include <map>
#include <mutex>
#include <utility>

#include "core/call_record.h"

namespace rpn::probes {

namespace {

using Clock = std::chrono::steady_clock;

std::mutex timesMutex;
std::map<std::pair<std::string, std::string>, StageTime> totals;  // (operation, stage)

// The span open on this thread: the call's operation and stage, since when.
struct Open {
  const char* operation = nullptr;
  const char* stage = nullptr;
  Clock::time_point since;
};
thread_local Open openSpan;

void closeSpan(Clock::time_point now) {
  if (!openSpan.operation) return;
  const double ms = std::chrono::duration<double, std::milli>(now - openSpan.since).count();
  std::lock_guard<std::mutex> lock(timesMutex);
  auto& t = totals[{openSpan.operation, openSpan.stage}];
  t.operation = openSpan.operation;
  t.stage = openSpan.stage;
  t.ms += ms;
  t.spans += 1;
  openSpan.operation = nullptr;
}

// core/call_record.cc calls this with stage "" when a call starts and nullptr when it ends.
void timeStage(uint64_t, const char* operation, const char* stage) {
  const auto now = Clock::now();
  closeSpan(now);
  if (!stage || !operation) return;
  openSpan.operation = operation;
  openSpan.stage = *stage ? stage : "(entry)";
  openSpan.since = now;
}

}  // namespace

void startStageTimer() {
  {
    std::lock_guard<std::mutex> lock(timesMutex);
    totals.clear();
  }
  rp::calls::setStageHook(timeStage);
}

std::vector<StageTime> readStageTimes() {
  std::lock_guard<std::mutex> lock(timesMutex);
  std::vector<StageTime> out;
  for (auto& [key, t] : totals) out.push_back(t);
  totals.clear();
  return out;
}

}  // namespace rpn::probes
