// OpenBLAS from Debian's libopenblas-dev: CBLAS for matrix products, LAPACK (later) for eigensolvers.
#include <cblas.h>

#if defined(__x86_64__)
#include <xmmintrin.h>
/// Flush denormal floats to zero (FTZ) and read them as zero (DAZ) on the calling thread: arithmetic on denormals
/// (the tails of decaying optimizer moments and gradients) is ~100× slower on x86.
static inline void diffuse_flush_denormals(void) { _mm_setcsr(_mm_getcsr() | 0x8040); }
#else
static inline void diffuse_flush_denormals(void) {}
#endif
