// OpenBLAS from Debian's libopenblas-dev: CBLAS for matrix products, LAPACK for eigensolvers; and the engine's few
// inline helpers that Swift has no portable spelling for (denormal flushing, prefetching, atomics, a spin-wait
// hint).
#include <cblas.h>
#include <stdbool.h>
#include <stddef.h>

/// LAPACK's symmetric eigensolver (divide and conquer), as OpenBLAS exports it (Fortran calling convention, with the
/// hidden lengths of the two character arguments): eigenvalues ascending in w, eigenvectors in the columns of a.
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda, double *w,
                    double *work, const int *lwork, int *iwork, const int *liwork, int *info,
                    size_t jobz_length, size_t uplo_length);

#if defined(__x86_64__)
#include <xmmintrin.h>
/// Flush denormal floats to zero (FTZ) and read them as zero (DAZ) on the calling thread: arithmetic on denormals
/// (the tails of decaying optimizer moments and gradients) is ~100× slower on x86.
static inline void diffuse_flush_denormals(void) { _mm_setcsr(_mm_getcsr() | 0x8040); }
/// A hint that the calling thread is spinning on a value another thread will change.
static inline void diffuse_spin_pause(void) { _mm_pause(); }
#elif defined(__aarch64__)
/// The same on ARM64: FPCR's FZ bit (24) flushes denormal inputs and results to zero.
static inline void diffuse_flush_denormals(void) {
    unsigned long fpcr;
    __asm__ volatile("mrs %0, fpcr" : "=r"(fpcr));
    __asm__ volatile("msr fpcr, %0" : : "r"(fpcr | (1UL << 24)));
}
static inline void diffuse_spin_pause(void) { __asm__ volatile("yield"); }
#else
static inline void diffuse_flush_denormals(void) {}
static inline void diffuse_spin_pause(void) {}
#endif

/// The vector instructions of the CPU this runs on, as far as this build may use them: 2 for AVX-512 (F, with the
/// operating system saving zmm registers), 1 for AVX2 with FMA, 0 for neither or another architecture. A build for a
/// CPU without AVX-512 (say -target-cpu znver3) compiles 512-bit vectors as pairs of 256-bit ones: it reports 1 even
/// on an AVX-512 CPU.
#if defined(__x86_64__)
#include <cpuid.h>
static inline int diffuse_vector_level(void) {
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const int fma = (c >> 12) & 1, osxsave = (c >> 27) & 1;
    if (!osxsave) return 0;
    unsigned int xcr0_low, xcr0_high;
    __asm__ volatile("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    const int ymm = (xcr0_low & 0x6) == 0x6, zmm = (xcr0_low & 0xE6) == 0xE6;
#if defined(__AVX512F__)
    if (avx512f && zmm) return 2;
#else
    (void)avx512f; (void)zmm;
#endif
    return avx2 && fma && ymm ? 1 : 0;
}
#else
static inline int diffuse_vector_level(void) { return 0; }
#endif

/// A hint to bring the cache line at p into the caches ahead of its use.
static inline void diffuse_prefetch(const void *p) { __builtin_prefetch(p); }

/// Sequentially consistent atomics on a long, for the engine's worker threads.
static inline long diffuse_atomic_load(const long *p) { return __atomic_load_n(p, __ATOMIC_SEQ_CST); }
static inline void diffuse_atomic_store(long *p, long value) { __atomic_store_n(p, value, __ATOMIC_SEQ_CST); }
static inline long diffuse_atomic_add(long *p, long value) { return __atomic_add_fetch(p, value, __ATOMIC_SEQ_CST); }
/// Replaces *p by desired if it holds *expected; otherwise loads it into *expected.
static inline bool diffuse_atomic_compare_exchange(long *p, long *expected, long desired) {
    return __atomic_compare_exchange_n(p, expected, desired, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}
