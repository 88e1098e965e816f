/*
 * checksum.h - CRC-32 (zlib's, the IEEE polynomial) over byte ranges, for
 * detecting damage in stored model versions. Not a defence against someone
 * who can write the store: it tells a torn or decayed page from a good one.
 */
#ifndef GDML_CHECKSUM_H
#define GDML_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

/* CRC-32 of data[0..len), continuing from crc (start with 0). */
uint32_t gdml_crc32(uint32_t crc, const void *data, size_t len);

/* The CRC-32 of A followed by B, given crc(A), crc(B) and B's length. */
uint32_t gdml_crc32_combine(uint32_t crc_a, uint32_t crc_b, size_t len_b);

#endif
