/*
 * test_checksum.c - CRC-32 (zlib's IEEE polynomial): the standard check
 * values, empty input, continuing a CRC piecewise, combining the CRCs of two
 * ranges, and ranges longer than the 1 GiB pieces checksum.c feeds zlib.
 */
#include "checksum.h"

#include <criterion/criterion.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

Test(checksum, known_values)
{
    cr_assert_eq(gdml_crc32(0, "123456789", 9), 0xCBF43926u);
    const char *fox = "The quick brown fox jumps over the lazy dog";
    cr_assert_eq(gdml_crc32(0, fox, strlen(fox)), 0x414FA339u);
    cr_assert_eq(gdml_crc32(0, "a", 1), 0xE8B7BE43u);
    unsigned char zeros[32] = {0};
    cr_assert_eq(gdml_crc32(0, zeros, sizeof zeros), 0x190A55ADu);
}

Test(checksum, empty_input)
{
    cr_assert_eq(gdml_crc32(0, "", 0), 0u);
    cr_assert_eq(gdml_crc32(0, NULL, 0), 0u);
    /* Nothing more to feed leaves a running CRC as it is. */
    cr_assert_eq(gdml_crc32(0xCBF43926u, "x", 0), 0xCBF43926u);
    cr_assert_eq(gdml_crc32_combine(0xCBF43926u, 0, 0), 0xCBF43926u);
}

Test(checksum, continuing_equals_all_at_once)
{
    const char *s = "123456789";
    for (size_t cut = 0; cut <= 9; cut++) {
        uint32_t c = gdml_crc32(0, s, cut);
        c = gdml_crc32(c, s + cut, 9 - cut);
        cr_assert_eq(c, 0xCBF43926u, "cut at %zu", cut);
    }
}

Test(checksum, combine_equals_crc_of_the_concatenation)
{
    unsigned char buf[5000];
    uint32_t x = 12345;
    for (size_t i = 0; i < sizeof buf; i++) {
        x = x * 1103515245u + 12345u;
        buf[i] = (unsigned char)(x >> 16);
    }
    uint32_t whole = gdml_crc32(0, buf, sizeof buf);
    const size_t cuts[] = {0, 1, 7, 4096, 4999, 5000};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        size_t a = cuts[i], b = sizeof buf - a;
        uint32_t ca = gdml_crc32(0, buf, a), cb = gdml_crc32(0, buf + a, b);
        cr_assert_eq(gdml_crc32_combine(ca, cb, b), whole, "cut at %zu", a);
    }
    /* Three ranges, combined left to right, as the store combines chunks. */
    uint32_t c = gdml_crc32(0, buf, 1000);
    c = gdml_crc32_combine(c, gdml_crc32(0, buf + 1000, 3000), 3000);
    c = gdml_crc32_combine(c, gdml_crc32(0, buf + 4000, 1000), 1000);
    cr_assert_eq(c, whole);
    cr_assert_eq(gdml_crc32_combine(gdml_crc32(0, "1234", 4), gdml_crc32(0, "56789", 5), 5),
                 0xCBF43926u);
}

Test(checksum, long_input_at_once_equals_piecewise)
{
    size_t n = (size_t)3 << 20;
    unsigned char *b = malloc(n);
    cr_assert_not_null(b);
    for (size_t i = 0; i < n; i++)
        b[i] = (unsigned char)(i * 31 + (i >> 11));
    uint32_t once = gdml_crc32(0, b, n);
    uint32_t piece = 0, combined = 0;
    size_t step = 1;
    for (size_t at = 0; at < n;) {
        size_t len = step < n - at ? step : n - at;
        piece = gdml_crc32(piece, b + at, len);
        combined = at == 0 ? gdml_crc32(0, b, len)
                           : gdml_crc32_combine(combined, gdml_crc32(0, b + at, len), len);
        at += len;
        step = step * 3 + 1; /* pieces of every size, up to a megabyte or so */
    }
    cr_assert_eq(piece, once);
    cr_assert_eq(combined, once);
    free(b);
}

/*
 * Longer than the 1 GiB pieces checksum.c hands zlib (whose lengths are
 * 32-bit). Zero pages of an anonymous mapping cost no memory.
 */
Test(checksum, input_longer_than_a_piece, .timeout = 60)
{
    size_t gib = (size_t)1 << 30, n = gib + 4096 + 3;
    unsigned char *b = mmap(NULL, n, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (b == MAP_FAILED)
        cr_skip_test("cannot map %zu bytes", n);
    uint32_t once = gdml_crc32(0, b, n);
    uint32_t first = gdml_crc32(0, b, gib);
    uint32_t rest = gdml_crc32(0, b + gib, n - gib);
    cr_assert_eq(gdml_crc32(first, b + gib, n - gib), once);
    cr_assert_eq(gdml_crc32_combine(first, rest, n - gib), once);
    /* A CRC of zeros is not the CRC of fewer zeros: the length counts. */
    cr_assert_neq(once, first);
    munmap(b, n);
}
