// OpenBLAS from Debian's libopenblas-dev: CBLAS for matrix products, LAPACK for eigensolvers.
#include <cblas.h>
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
#else
static inline void diffuse_flush_denormals(void) {}
#endif
