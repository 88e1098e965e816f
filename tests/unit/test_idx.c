/* test_idx.c - IDX round trips, plain and gzip, and the errors for bad files. */
#include "idx.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

/* Returns dir/name in a malloc'd string. */
static char *path_in(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    cr_assert_not_null(p);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

/* Writes len raw bytes to path, gzip-compressed if gz. */
static void write_bytes(const char *path, const void *bytes, size_t len, bool gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, bytes, (unsigned)len), (int)len);
        cr_assert_eq(gzclose(f), Z_OK);
        return;
    }
    FILE *f = fopen(path, "wb");
    cr_assert_not_null(f);
    cr_assert_eq(fwrite(bytes, 1, len, f), len);
    cr_assert_eq(fclose(f), 0);
}

static off_t file_size(const char *path)
{
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return st.st_size;
}

/* A 3 x 4 x 5 idx with a recognizable pattern; free with gdml_idx_fini. */
static gdml_idx sample_idx(void)
{
    gdml_idx idx = {.ndim = 3, .dims = {3, 4, 5}, .size = 60};
    idx.data = malloc(idx.size);
    cr_assert_not_null(idx.data);
    for (size_t i = 0; i < idx.size; i++)
        idx.data[i] = (uint8_t)(i * 7 + 1);
    return idx;
}

static void round_trip(const char *name, bool expect_gz)
{
    char *dir = gdml_test_tmpdir();
    char *path = path_in(dir, name);
    gdml_idx in = sample_idx(), out = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_write(path, &in, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_idx_file_size(&in), 4 + 12 + 60);

    /* A .gz file starts with the gzip magic; a plain file is exactly the IDX bytes. */
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f);
    unsigned char magic[2] = {0};
    cr_assert_eq(fread(magic, 1, 2, f), 2);
    fclose(f);
    if (expect_gz)
        cr_assert(magic[0] == 0x1f && magic[1] == 0x8b, "not gzip: %02x %02x", magic[0], magic[1]);
    else
        cr_assert_eq(file_size(path), (off_t)gdml_idx_file_size(&in));

    cr_assert_eq(gdml_idx_read(path, &out, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(out.ndim, 3);
    cr_assert_eq(out.dims[0], 3);
    cr_assert_eq(out.dims[1], 4);
    cr_assert_eq(out.dims[2], 5);
    cr_assert_eq(out.dims[3], 0);
    cr_assert_eq(out.size, in.size);
    cr_assert_arr_eq(out.data, in.data, in.size);

    gdml_idx_fini(&in);
    gdml_idx_fini(&out);
    cr_assert_null(out.data);
    cr_assert_eq(out.size, 0);
    free(path);
    gdml_test_rmtree(dir);
}

Test(idx, round_trip_plain)
{
    round_trip("a-idx3-ubyte", false);
}

Test(idx, round_trip_gz)
{
    round_trip("a-idx3-ubyte.gz", true);
}

Test(idx, round_trip_one_and_four_dims)
{
    char *dir = gdml_test_tmpdir();
    char *path = path_in(dir, "x.gz");
    uint8_t bytes[2 * 3 * 1 * 2];
    for (size_t i = 0; i < sizeof bytes; i++)
        bytes[i] = (uint8_t)(255 - i);
    gdml_idx four = {.ndim = 4, .dims = {2, 3, 1, 2}, .data = bytes, .size = sizeof bytes};
    gdml_idx one = {.ndim = 1, .dims = {12}, .data = bytes, .size = sizeof bytes};
    gdml_idx *cases[] = {&four, &one};
    for (int c = 0; c < 2; c++) {
        gdml_idx out = {0};
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_idx_write(path, cases[c], &e), GDML_OK, "%s", e.text);
        cr_assert_eq(gdml_idx_read(path, &out, &e), GDML_OK, "%s", e.text);
        cr_assert_eq(out.ndim, cases[c]->ndim);
        cr_assert_arr_eq(out.dims, cases[c]->dims, sizeof out.dims);
        cr_assert_arr_eq(out.data, bytes, sizeof bytes);
        gdml_idx_fini(&out);
    }
    free(path);
    gdml_test_rmtree(dir);
}

Test(idx, fini_accepts_zeroed_and_null)
{
    gdml_idx z = {0};
    gdml_idx_fini(&z);
    gdml_idx_fini(NULL);
}

/* Writes bytes to dir/name (plain or gz), reads it and expects code with each needle. */
static void expect_read_error(const void *bytes, size_t len, bool gz, gdml_err code,
                              const char *needle)
{
    char *dir = gdml_test_tmpdir();
    char *path = path_in(dir, gz ? "bad-idx.gz" : "bad-idx");
    write_bytes(path, bytes, len, gz);
    gdml_idx out = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(path, &out, &e), code, "%s", e.text);
    cr_assert_not_null(strstr(e.text, path), "message does not name the file: %s", e.text);
    cr_assert_not_null(strstr(e.text, needle), "message lacks '%s': %s", needle, e.text);
    cr_assert_null(out.data, "out was set on failure");
    cr_assert_eq(out.ndim, 0);
    free(path);
    gdml_test_rmtree(dir);
}

Test(idx, bad_magic)
{
    const uint8_t b[] = {0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 7};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "bad magic 0x1234");
    expect_read_error(b, sizeof b, true, GDML_ERR_FORMAT, "bad magic 0x1234");
}

Test(idx, text_file_is_not_idx)
{
    const char *text = "label,pixel0\n1,0\n";
    expect_read_error(text, strlen(text), false, GDML_ERR_FORMAT, "not an IDX file");
}

Test(idx, wrong_type)
{
    const uint8_t b[] = {0, 0, 0x0d, 0x01, 0, 0, 0, 1, 0, 0, 0, 0};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "type 0x0d is not supported");
}

Test(idx, zero_dimensions)
{
    const uint8_t b[] = {0, 0, 0x08, 0x00, 1, 2, 3};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "0 dimensions");
}

Test(idx, five_dimensions)
{
    const uint8_t b[] = {0, 0, 0x08, 0x05, 0, 0, 0, 1, 0, 0, 0, 1, 0,
                         0, 0, 1,    0,    0, 0, 1, 0, 0, 0, 1, 9};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "5 dimensions");
}

Test(idx, zero_sized_dimension)
{
    const uint8_t b[] = {0, 0, 0x08, 0x02, 0, 0, 0, 3, 0, 0, 0, 0};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "dimension 1");
}

Test(idx, truncated_magic)
{
    const uint8_t b[] = {0, 0, 0x08};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "ends after 3 of 4 header bytes");
    expect_read_error(b, 0, false, GDML_ERR_FORMAT, "ends after 0 of 4 header bytes");
}

Test(idx, truncated_dimensions)
{
    const uint8_t b[] = {0, 0, 0x08, 0x03, 0, 0, 0, 10, 0, 0};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT,
                      "ends after 6 of 12 dimension header bytes");
    expect_read_error(b, sizeof b, true, GDML_ERR_FORMAT,
                      "ends after 6 of 12 dimension header bytes");
}

Test(idx, truncated_data)
{
    uint8_t b[8 + 50] = {0, 0, 0x08, 0x01, 0, 0, 0, 100};
    expect_read_error(b, sizeof b, false, GDML_ERR_FORMAT, "file ends after 50 of 100 data bytes");
    expect_read_error(b, sizeof b, true, GDML_ERR_FORMAT, "file ends after 50 of 100 data bytes");
}

Test(idx, gzip_stream_cut_short)
{
    /* A valid .gz file cut in the middle of its deflate stream: a short file. */
    char *dir = gdml_test_tmpdir();
    char *whole = path_in(dir, "whole.gz");
    gdml_idx in = {.ndim = 1, .dims = {100000}, .size = 100000};
    in.data = malloc(in.size);
    cr_assert_not_null(in.data);
    unsigned x = 1;
    for (size_t i = 0; i < in.size; i++)
        in.data[i] = (uint8_t)((x = x * 1103515245u + 12345u) >> 24);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_write(whole, &in, &e), GDML_OK, "%s", e.text);
    char *bytes = gdml_test_read_file(whole);
    cr_assert_not_null(bytes);
    off_t len = file_size(whole);
    char *cut = path_in(dir, "cut.gz");
    write_bytes(cut, bytes, (size_t)len / 2, false);
    gdml_idx out = {0};
    cr_assert_eq(gdml_idx_read(cut, &out, &e), GDML_ERR_FORMAT, "%s", e.text);
    cr_assert_not_null(strstr(e.text, cut), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "of 100000 data bytes"), "%s", e.text);
    free(bytes);
    free(whole);
    free(cut);
    gdml_idx_fini(&in);
    gdml_test_rmtree(dir);
}

Test(idx, missing_file)
{
    char *dir = gdml_test_tmpdir();
    char *path = path_in(dir, "no-such-file-idx3-ubyte.gz");
    gdml_idx out = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(path, &out, &e), GDML_ERR_IO);
    cr_assert_not_null(strstr(e.text, path), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "No such file"), "%s", e.text);
    cr_assert_null(out.data);
    cr_assert_eq(gdml_idx_read(path, &out, NULL), GDML_ERR_IO);
    free(path);
    gdml_test_rmtree(dir);
}

Test(idx, write_to_missing_directory)
{
    char *dir = gdml_test_tmpdir();
    char *plain = path_in(dir, "no/such/dir/x");
    char *gz = path_in(dir, "no/such/dir/x.gz");
    gdml_idx in = sample_idx();
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_write(plain, &in, &e), GDML_ERR_IO);
    cr_assert_not_null(strstr(e.text, plain), "%s", e.text);
    cr_assert_eq(gdml_idx_write(gz, &in, &e), GDML_ERR_IO);
    cr_assert_not_null(strstr(e.text, gz), "%s", e.text);
    gdml_idx_fini(&in);
    free(plain);
    free(gz);
    gdml_test_rmtree(dir);
}

Test(idx, write_refuses_inconsistent_shape)
{
    char *dir = gdml_test_tmpdir();
    char *path = path_in(dir, "x");
    gdml_idx in = sample_idx();
    gdml_errmsg e = {{0}};
    in.size = 59;
    cr_assert_eq(gdml_idx_write(path, &in, &e), GDML_ERR_INVALID);
    in.size = 60;
    in.ndim = 5;
    cr_assert_eq(gdml_idx_write(path, &in, &e), GDML_ERR_INVALID);
    in.ndim = 3;
    in.dims[1] = 0;
    cr_assert_eq(gdml_idx_write(path, &in, &e), GDML_ERR_INVALID);
    gdml_idx_fini(&in);
    free(path);
    gdml_test_rmtree(dir);
}

Test(idx, fashion_mnist_test_set)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("Fashion-MNIST is not installed");
    gdml_idx img = {0}, lab = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-images-idx3-ubyte.gz"), &img, &e), GDML_OK,
                 "%s", e.text);
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-labels-idx1-ubyte.gz"), &lab, &e), GDML_OK,
                 "%s", e.text);
    cr_assert_eq(img.ndim, 3);
    cr_assert_eq(img.dims[0], 10000);
    cr_assert_eq(img.dims[1], 28);
    cr_assert_eq(img.dims[2], 28);
    cr_assert_eq(img.size, 10000u * 28 * 28);
    cr_assert_eq(lab.ndim, 1);
    cr_assert_eq(lab.dims[0], 10000);
    int count[10] = {0};
    for (size_t i = 0; i < lab.size; i++) {
        cr_assert(lab.data[i] < 10, "label %u at %zu", lab.data[i], i);
        count[lab.data[i]]++;
    }
    /* The test set is balanced: 1000 of each class. */
    for (int c = 0; c < 10; c++)
        cr_assert_eq(count[c], 1000, "class %d has %d samples", c, count[c]);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
}
