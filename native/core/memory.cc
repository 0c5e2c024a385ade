#include "core/memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif
#if defined(__linux__)
#include <sys/mman.h>
#endif

#include <cstdint>

namespace rp {

bool keepFreedMemory() {
#if defined(__GLIBC__)
  const char* env = std::getenv("RECONPATCH_MALLOC_TUNING");
  if (env && std::strcmp(env, "0") == 0) return false;
  // Fixed values also stop glibc's dynamic threshold, which otherwise resets the trim threshold
  // to twice the last freed mmapped block.
  return mallopt(M_MMAP_THRESHOLD, 32 << 20) == 1 && mallopt(M_TRIM_THRESHOLD, 128 << 20) == 1;
#else
  return false;
#endif
}

void releaseFreedMemory() {
#if defined(__GLIBC__)
  malloc_trim(0);
#endif
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
size_t hugeRounded(size_t bytes) { return (bytes + kHugePage - 1) / kHugePage * kHugePage; }
}  // namespace

void* mapHugePages(size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  if (bytes == 0) return nullptr;
  const size_t len = hugeRounded(bytes);
  // One huge page more than needed, so that an aligned start exists; the ends are unmapped.
  void* raw = mmap(nullptr, len + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  if (aligned > start) munmap(raw, aligned - start);
  const uintptr_t end = start + len + kHugePage;
  if (end > aligned + len) munmap(reinterpret_cast<void*>(aligned + len), end - (aligned + len));
  madvise(reinterpret_cast<void*>(aligned), len, MADV_HUGEPAGE);  // a hint: refused, it is plain pages
  return reinterpret_cast<void*>(aligned);
#else
  (void)bytes;
  return nullptr;
#endif
}

void unmapHugePages(void* p, size_t bytes) {
#if defined(__linux__)
  if (p) munmap(p, hugeRounded(bytes));
#else
  (void)p;
  (void)bytes;
#endif
}

}  // namespace rp
