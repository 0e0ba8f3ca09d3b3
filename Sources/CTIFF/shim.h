#include <stdarg.h>
#include <stdio.h>
#include <tiffio.h>
