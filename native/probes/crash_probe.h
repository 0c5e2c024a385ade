// Test-only: crashes the process on purpose, so that test/crash.test.ts can check what the crash
// handler (addon/crash_handler.*) reports. The addon exposes it only when RECONPATCH_TEST_PROBES=1
// was set when it loaded.
#pragma once
#include <string>

namespace rpn::probes {

// Crashes now. kind: "segv" (a write to address 0xdead0), "bus" (a read past the end of a
// truncated file mapping), "fpe" (integer division by zero), "ill" (an undefined instruction),
// "abort" (std::abort). With thread = true the crash happens on a new thread while this one
// waits. Returns false for an unknown kind.
bool crashNow(const std::string& kind, bool thread);

// Arms a crash of `kind` for the next time an engine call enters `stage` (as named in
// core/call_record.h's stage(), e.g. "knn"), on the thread running the call. Returns false for an
// unknown kind.
bool crashAtStage(const std::string& stage, const std::string& kind);

}  // namespace rpn::probes
