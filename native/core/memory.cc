#include "core/memory.h"

#include <cstdlib>
#include <cstring>

#if defined(__GLIBC__)
#include <malloc.h>
#endif

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

}  // namespace rp
