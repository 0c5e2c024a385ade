#pragma once
// Function multi-versioning for hot loops: an AVX2 + FMA (x86-64-v3) clone beside the generic
// one, picked at load time, so generic builds stay fast. "arch=haswell" would be picked on
// Intel Haswell-family CPUs only (GCC checks the model), never on AMD. Empty off x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define RP_X86_V3_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define RP_X86_V3_CLONES
#endif
