#ifndef FLEDGE_CZLIB_SHIM_H
#define FLEDGE_CZLIB_SHIM_H

// zlib's deflateInit2/inflateInit2 are macros that pass the library version and
// the stream's size; Swift cannot import macros with arguments, so they get wrappers.
#include <zlib.h>

static inline int fledge_deflate_init_raw(z_streamp stream, int level, int window_bits, int mem_level) {
    return deflateInit2(stream, level, Z_DEFLATED, -window_bits, mem_level, Z_DEFAULT_STRATEGY);
}
static inline int fledge_inflate_init_raw(z_streamp stream, int window_bits) {
    return inflateInit2(stream, -window_bits);
}

#endif
