// libpng from Debian's libpng-dev: reading PNG images of any colour type (its simplified API).
#include <png.h>
