#include "probes/crash_probe.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "core/call_record.h"

namespace rpn::probes {

namespace {

// Each crash in its own named, never-inlined function, so a backtrace shows where it was.
[[gnu::noinline]] void probeSegv() { *reinterpret_cast<volatile int*>(static_cast<uintptr_t>(0xdead0)) = 1; }

[[gnu::noinline]] void probeBus() {
  const int fd = memfd_create("reconpatch-probe", 0);
  if (fd < 0 || ftruncate(fd, 4096) != 0) std::abort();
  auto* p = static_cast<volatile char*>(mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, 0));
  if (p == MAP_FAILED || ftruncate(fd, 0) != 0) std::abort();
  (void)p[0];  // the page no longer has a backing file page
}

[[gnu::noinline]] void probeFpe() {
  volatile int one = 1, zero = 0;  // both volatile: GCC turns 1 / x into a comparison
  volatile int r = one / zero;
  (void)r;
}

[[gnu::noinline]] void probeIll() { __builtin_trap(); }

[[gnu::noinline]] void probeAbort() { std::abort(); }

using Crash = void (*)();
Crash crashOf(const std::string& kind) {
  if (kind == "segv") return probeSegv;
  if (kind == "bus") return probeBus;
  if (kind == "fpe") return probeFpe;
  if (kind == "ill") return probeIll;
  if (kind == "abort") return probeAbort;
  return nullptr;
}

char armedStage[64];
std::atomic<Crash> armedCrash{nullptr};

void onStage(uint64_t, const char*, const char* stage) {
  Crash c = armedCrash.load();
  if (c && stage && std::strcmp(stage, armedStage) == 0) c();
}

}  // namespace

bool crashNow(const std::string& kind, bool thread) {
  Crash c = crashOf(kind);
  if (!c) return false;
  if (thread) std::thread(c).join();
  else c();
  return true;
}

bool crashAtStage(const std::string& stage, const std::string& kind) {
  Crash c = crashOf(kind);
  if (!c || stage.size() >= sizeof(armedStage)) return false;
  std::memcpy(armedStage, stage.c_str(), stage.size() + 1);
  armedCrash.store(c);
  rp::calls::setStageHook(onStage);
  return true;
}

}  // namespace rpn::probes
