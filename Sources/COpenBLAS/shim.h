// OpenBLAS from Debian's libopenblas-dev: CBLAS for matrix products, LAPACK (later) for eigensolvers.
#include <cblas.h>
