// Benchmarks only: wall time per stage of engine calls, from the stage names the engine already
// records for the crash handler (core/call_record.h), so a breakdown costs nothing in the product.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace rpn::probes {

struct StageTime {
  std::string operation;  // "score", "fitEnd", ...
  std::string stage;      // as named by stage(); "(entry)" before the call's first stage
  double ms = 0;          // summed over every call since the last read
  int64_t spans = 0;      // how many times the stage was entered
};

// Starts timing (replaces any stage hook, e.g. an armed crash): from now on each stage of each
// engine call is timed from its entry to the next stage or the end of the call.
void startStageTimer();
// The times summed since the last read (or the start), and resets them.
std::vector<StageTime> readStageTimes();

// Which thread ran each engine's calls since the timer started: one row per (engine, operation,
// thread), threads numbered 1, 2, ... in the order they were first seen (engine ids as in
// core/call_record.h; 0: model decoding, before there is an engine).
struct CallThread {
  uint64_t engine = 0;
  std::string operation;
  int64_t thread = 0;
};
std::vector<CallThread> readCallThreads();

}  // namespace rpn::probes
