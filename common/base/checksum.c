/* checksum.c - CRC-32 through zlib (checksum.h). zlib takes uInt lengths,
 * so long ranges are fed in pieces. */
#include "checksum.h"

#include <limits.h>
#include <zlib.h>

#define PIECE ((size_t)1 << 30)

uint32_t gdml_crc32(uint32_t crc, const void *data, size_t len)
{
    const unsigned char *p = data;
    uLong c = crc;
    while (len > 0) {
        size_t n = len < PIECE ? len : PIECE;
        c = crc32(c, p, (uInt)n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}

uint32_t gdml_crc32_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b)
{
    return (uint32_t)crc32_combine(crc_a, crc_b, (z_off_t)len_b);
}
