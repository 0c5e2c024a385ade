#include "probes/stage_timer.h"

#include <chrono>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <tuple>
#include <utility>

#include "core/call_record.h"

namespace rpn::probes {

namespace {

using Clock = std::chrono::steady_clock;

std::mutex timesMutex;
std::map<std::pair<std::string, std::string>, StageTime> totals;  // (operation, stage)
std::map<std::thread::id, int64_t> threadNumbers;                  // 1, 2, ... in order of first call
std::set<std::tuple<uint64_t, std::string, int64_t>> callThreads;  // (engine, operation, thread number)

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
void timeStage(uint64_t engine, const char* operation, const char* stage) {
  const auto now = Clock::now();
  closeSpan(now);
  if (stage && !*stage) {  // a call starts
    std::lock_guard<std::mutex> lock(timesMutex);
    auto number = threadNumbers.emplace(std::this_thread::get_id(), static_cast<int64_t>(threadNumbers.size()) + 1).first->second;
    callThreads.emplace(engine, operation ? operation : "", number);
  }
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
    threadNumbers.clear();
    callThreads.clear();
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

std::vector<CallThread> readCallThreads() {
  std::lock_guard<std::mutex> lock(timesMutex);
  std::vector<CallThread> out;
  for (const auto& [engine, operation, thread] : callThreads) out.push_back({engine, operation, thread});
  return out;
}

}  // namespace rpn::probes
