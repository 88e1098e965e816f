/*
 * idx.h - reading and writing IDX files (the MNIST family's format), plain or
 * gzip-compressed (zlib reads both transparently). Only unsigned-byte IDX
 * (type 0x08) with 1 to 4 dimensions is supported, which covers MNIST and
 * Fashion-MNIST images and labels.
 */
#ifndef GDML_IDX_H
#define GDML_IDX_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gdml_idx {
    uint32_t ndim;
    uint32_t dims[4];
    uint8_t *data; /* dims[0] * ... * dims[ndim-1] bytes, malloc'd */
    size_t size;
} gdml_idx;

/*
 * Reads path into out (caller-owned storage; release with gdml_idx_fini).
 * Returns GDML_ERR_IO if it cannot be opened, GDML_ERR_FORMAT (e names path
 * and fault) for a bad magic, type, dimension count or a short file.
 */
gdml_err gdml_idx_read(const char *path, gdml_idx *out, gdml_errmsg *e);

/* Writes idx to path; gzip-compressed if path ends in ".gz". */
gdml_err gdml_idx_write(const char *path, const gdml_idx *idx, gdml_errmsg *e);

/* Bytes the file holds uncompressed: header (4 + 4*ndim) plus data. */
size_t gdml_idx_file_size(const gdml_idx *idx);

/* Frees out's data and zeroes it. Safe on a zeroed idx. */
void gdml_idx_fini(gdml_idx *idx);

#endif
