// Process memory policy for the engine's repeated allocations (bench/NOTES.md, "Fresh pages").
//
// glibc's malloc gives large freed blocks back to the kernel (munmap, heap trimming) and takes
// fresh pages on the next allocation, each costing a fault and zeroing (far slower than reusing a
// page; figures in bench/NOTES.md). Scoring allocates the same few-MiB tensors for every image, so
// it paid that again and again.
#pragma once
#include <cstddef>

namespace rp {

// Keeps freed blocks below 32 MiB in the process for reuse (mmap threshold 32 MiB, trim threshold
// 128 MiB per arena). Once per process, at module load; RECONPATCH_MALLOC_TUNING=0 skips it.
// No effect outside glibc. Returns whether the policy was applied.
bool keepFreedMemory();

// Returns free memory of every arena to the kernel (malloc_trim), e.g. after a fit released its
// staged features.
void releaseFreedMemory();

// An anonymous zero-filled mapping of at least `bytes`, aligned to 2 MiB and marked for
// transparent huge pages (madvise; the kernel's "madvise" mode, as on Debian, honours it): its
// first touch costs one fault per 2 MiB instead of one per 4 KiB, which on these VMs was ~7 us
// each (bench/NOTES.md, "Fresh pages"). nullptr where that is not available (then allocate as
// usual). Release with unmapHugePages(p, bytes).
void* mapHugePages(size_t bytes);
void unmapHugePages(void* p, size_t bytes);

}  // namespace rp
