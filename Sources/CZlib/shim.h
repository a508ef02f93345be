// zlib from Debian's zlib1g-dev: gzip files (IDX data sets) and, later, PNG's deflate.
#include <zlib.h>
