// Crash reports: a fatal-signal handler (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT) that writes the
// signal, the faulting address, the native backtrace (module + offset per frame) and the engine
// calls running (core/call_record.h) to stderr and to a file under the cache directory, then lets
// the signal take its default action. Everything the handler needs is prepared at install time.
#pragma once
#include <string>

namespace rpn {

struct CrashHandlerState {
  bool installed = false;  // not with RECONPATCH_CRASH_HANDLER=0, nor in an AddressSanitizer build
  std::string dir;         // where crash files go ("" when no cache directory could be named)
};

// Installs the handler once per process; later calls return the first result.
const CrashHandlerState& installCrashHandler(const std::string& torchVersion);

// Gives the calling thread an alternate signal stack (once per thread) so that a stack overflow
// still gets a report. Called on the threads that run engine calls; a no-op when not installed.
void ensureAltSignalStack();

}  // namespace rpn
