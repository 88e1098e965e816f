/* test_textdata.c - CSV and LIBSVM files into data sets, their errors, and their split. */
#include "lines.h"
#include "split.h"
#include "support.h"
#include "textdata.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static char *dir;

static void setup(void)
{
    dir = gdml_test_tmpdir();
}

static void teardown(void)
{
    gdml_test_rmtree(dir);
}

TestSuite(textdata, .init = setup, .fini = teardown);

/* Writes text to dir/name (gzip-compressed if name ends in .gz); returns the path. */
static char *put(const char *name, const char *text)
{
    char *path = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(path);
    sprintf(path, "%s/%s", dir, name);
    size_t n = strlen(name);
    if (n > 3 && strcmp(name + n - 3, ".gz") == 0) {
        gzFile f = gzopen(path, "wb");
        cr_assert_not_null(f);
        cr_assert_eq(gzwrite(f, text, (unsigned)strlen(text)), (int)strlen(text));
        gzclose(f);
    } else {
        gdml_test_write_file(path, text);
    }
    return path;
}

static gdml_text_options csv(void)
{
    return (gdml_text_options){.format = GDML_DATA_AUTO, .header = GDML_HEADER_AUTO};
}

/* Loads path (all shards), expecting success. */
static gdml_dataset load(const char *path, const gdml_text_options *opt)
{
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_text(path, opt, 0, 1, &ds, &e), GDML_OK, "%s", e.text);
    return ds;
}

/* Loads path expecting GDML_ERR_FORMAT whose message holds want. */
static void refused(const char *path, const gdml_text_options *opt, const char *want)
{
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_text(path, opt, 0, 1, &ds, &e), GDML_ERR_FORMAT,
                 "loaded '%s', or failed otherwise: %s", path, e.text);
    cr_assert(strstr(e.text, want), "message '%s' lacks '%s'", e.text, want);
    cr_assert_null(ds.x);
}

Test(textdata, formats_come_from_file_names)
{
    cr_assert_eq(gdml_data_format_of("a/train.csv"), GDML_DATA_CSV);
    cr_assert_eq(gdml_data_format_of("train.csv.gz"), GDML_DATA_CSV);
    cr_assert_eq(gdml_data_format_of("rcv1.svm"), GDML_DATA_LIBSVM);
    cr_assert_eq(gdml_data_format_of("x.libsvm.gz"), GDML_DATA_LIBSVM);
    cr_assert_eq(gdml_data_format_of("a9a.txt"), GDML_DATA_LIBSVM);
    cr_assert_eq(gdml_data_format_of("train-images-idx3-ubyte.gz"), GDML_DATA_IDX);
    cr_assert_eq(gdml_data_format_parse("libsvm"), GDML_DATA_LIBSVM);
    cr_assert_eq(gdml_data_format_parse("parquet"), -1);
    cr_assert_eq(gdml_csv_header_parse("yes"), GDML_HEADER_YES);
}

Test(textdata, a_csv_with_a_header_is_read_row_by_row)
{
    char *p = put("t.csv", "label,a,b,c\n2,0.5,1,-3\r\n\n0, 1e-3 ,2,3.25\n1,0,0,0");
    gdml_text_options o = csv();
    gdml_dataset ds = load(p, &o);
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.dim, 3);
    cr_assert_eq(ds.classes, 3);
    const float want[] = {0.5f, 1, -3, 1e-3f, 2, 3.25f, 0, 0, 0};
    for (int i = 0; i < 9; i++)
        cr_assert_float_eq(ds.x[i], want[i], 1e-7, "x[%d] = %g", i, ds.x[i]);
    cr_assert(ds.y[0] == 2 && ds.y[1] == 0 && ds.y[2] == 1);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, a_csv_without_a_header_and_its_label_last_is_read)
{
    char *p = put("t.csv.gz", "0.1,0.2,4\n0.3,0.4,5.0\n");
    gdml_text_options o = csv();
    o.label_column = -1;
    gdml_dataset ds = load(p, &o);
    cr_assert_eq(ds.n, 2);
    cr_assert_eq(ds.dim, 2);
    cr_assert(ds.y[0] == 4 && ds.y[1] == 5);
    cr_assert_float_eq(ds.x[3], 0.4f, 1e-7);
    gdml_dataset_fini(&ds);
    /* header = yes drops a numeric first line; header = no reads it */
    o.header = GDML_HEADER_YES;
    ds = load(p, &o);
    cr_assert_eq(ds.n, 1);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, csv_rows_are_sharded_by_data_row)
{
    char *p = put("t.csv", "y,x\n0,0\n1,1\n2,2\n3,3\n4,4\n");
    gdml_text_options o = csv();
    gdml_dataset ds = {0};
    cr_assert_eq(gdml_dataset_load_text(p, &o, 1, 2, &ds, NULL), GDML_OK);
    cr_assert_eq(ds.n, 2);
    cr_assert(ds.x[0] == 1 && ds.x[1] == 3 && ds.y[1] == 3);
    gdml_dataset_fini(&ds);
    cr_assert_eq(gdml_dataset_load_text(p, &o, 2, 2, &ds, NULL), GDML_ERR_INVALID);
    free(p);
}

Test(textdata, malformed_csv_rows_are_refused_naming_file_and_line)
{
    gdml_text_options o = csv();
    char *p = put("short.csv", "y,a,b\n1,2,3\n1,2\n");
    refused(p, &o, "short.csv:3: 2 fields, but the header has 3");
    free(p);
    p = put("word.csv", "1,2,3\n1,two,3\n");
    refused(p, &o, "word.csv:2: field 2, 'two', is not a finite number");
    free(p);
    p = put("nan.csv", "1,2\n1,nan\n");
    refused(p, &o, "nan.csv:2: field 2");
    free(p);
    p = put("label.csv", "1,2\n0.5,2\n");
    refused(p, &o, "label.csv:2: label '0.5' (column 0) is not a class number");
    free(p);
    p = put("big.csv", "300,2\n");
    refused(p, &o, "big.csv:1: label '300'");
    free(p);
    p = put("one.csv", "1\n2\n");
    refused(p, &o, "one.csv:1: 1 fields, so no label column 0");
    free(p);
    p = put("empty.csv", "a,b\n\n");
    refused(p, &o, "shard 0 of 1 is empty");
    free(p);
    o.label_column = 5;
    p = put("col.csv", "1,2\n");
    refused(p, &o, "no label column 5");
    free(p);
}

Test(textdata, a_missing_file_is_an_io_error_naming_it)
{
    gdml_text_options o = csv();
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_text("/nonexistent/x.csv", &o, 0, 1, &ds, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "/nonexistent/x.csv"), "%s", e.text);
    /* a name that says no format, with format = auto */
    char *p = put("data.dat", "1,2\n");
    cr_assert_eq(gdml_dataset_load_text(p, &o, 0, 1, &ds, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "[data] format"), "%s", e.text);
    o.format = GDML_DATA_CSV;
    ds = load(p, &o);
    cr_assert_eq(ds.n, 1);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, libsvm_rows_become_dense_rows_of_the_model_width)
{
    char *p = put("t.svm", "# a comment\n+1 1:0.5 3:2 # trailing\n-1 2:1.5\n\n+1 qid:3 4:-1\n");
    gdml_text_options o = {.dim = 5};
    gdml_dataset ds = load(p, &o);
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.dim, 5);
    cr_assert_eq(ds.classes, 2);
    const float want[] = {0.5f, 0, 2, 0, 0, 0, 1.5f, 0, 0, 0, 0, 0, 0, -1, 0};
    for (int i = 0; i < 15; i++)
        cr_assert_float_eq(ds.x[i], want[i], 1e-7, "x[%d] = %g", i, ds.x[i]);
    cr_assert(ds.y[0] == 1 && ds.y[1] == 0 && ds.y[2] == 1, "-1 is class 0");
    gdml_dataset_fini(&ds);
    /* Without a width, the largest index read is the width. */
    o.dim = 0;
    ds = load(p, &o);
    cr_assert_eq(ds.dim, 4);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, libsvm_rows_stay_sparse_on_request)
{
    char *p = put("s.svm", "+1 1:0.5 3:2\n-1 2:1.5\n+1 qid:3 4:-1 1:7\n");
    gdml_text_options o = {.dim = 1000000, .sparse = true};
    gdml_dataset ds = load(p, &o);
    cr_assert(gdml_dataset_sparse(&ds) && !ds.x, "no dense rows of a million features");
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.dim, 1000000);
    const size_t want_ptr[] = {0, 2, 3, 5};
    const uint32_t want_idx[] = {0, 2, 1, 3, 0}; /* from 0, in the order the row lists them */
    const float want_val[] = {0.5f, 2, 1.5f, -1, 7};
    cr_assert_arr_eq(ds.ptr, want_ptr, sizeof want_ptr);
    cr_assert_arr_eq(ds.idx, want_idx, sizeof want_idx);
    cr_assert_arr_eq(ds.val, want_val, sizeof want_val);
    cr_assert(ds.y[0] == 1 && ds.y[1] == 0 && ds.y[2] == 1);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, a_gzipped_libsvm_file_with_multiclass_labels_is_read)
{
    char *p = put("t.libsvm.gz", "3 1:1\n0 2:1\n7 1:2 2:2\n");
    gdml_text_options o = {.dim = 2};
    gdml_dataset ds = load(p, &o);
    cr_assert_eq(ds.n, 3);
    cr_assert_eq(ds.classes, 8);
    cr_assert(ds.y[2] == 7 && ds.x[4] == 2 && ds.x[5] == 2);
    gdml_dataset_fini(&ds);
    free(p);
}

Test(textdata, malformed_libsvm_rows_are_refused_naming_file_and_line)
{
    gdml_text_options o = {.dim = 10};
    char *p = put("a.svm", "1 1:1\n1 0:1\n");
    refused(p, &o, "a.svm:2: feature index 0 is outside 1..10");
    free(p);
    p = put("b.svm", "1 11:1\n");
    refused(p, &o, "b.svm:1: feature index 11 is outside 1..10 ([model] inputs)");
    free(p);
    p = put("c.svm", "1 3\n");
    refused(p, &o, "c.svm:1: '3' is not index:value");
    free(p);
    p = put("d.svm", "1 3:x\n");
    refused(p, &o, "d.svm:1: '3:x' is not index:value");
    free(p);
    p = put("e.svm", "yes 3:1\n");
    refused(p, &o, "e.svm:1: label 'yes' is not a class number");
    free(p);
    p = put("f.svm", "-1 1:1\n0 1:1\n");
    refused(p, &o, "f.svm:2: labels -1 and 0 both appear");
    free(p);
    p = put("g.svm", "1 -2:1\n");
    refused(p, &o, "g.svm:1: '-2:1' is not index:value");
    free(p);
    p = put("h.svm", "1 1:1e39\n");
    refused(p, &o, "h.svm:1: '1:1e39'");
    free(p);
}

Test(textdata, corrupt_gzip_and_binary_files_are_refused_not_crashed_on)
{
    gdml_text_options o = {.dim = 4};
    /* A gzip stream cut in the middle. */
    char *p = put("cut.svm.gz", "1 1:1\n2 2:2\n3 3:3\n1 1:1\n2 2:2\n3 3:3\n");
    FILE *f = fopen(p, "r+b");
    cr_assert_not_null(f);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fclose(f);
    cr_assert_eq(truncate(p, size / 2), 0);
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_dataset_load_text(p, &o, 0, 1, &ds, &e);
    cr_assert_neq(err, GDML_OK, "a cut gzip file was read whole");
    free(p);
    p = malloc(strlen(dir) + 16);
    sprintf(p, "%s/nul.svm", dir);
    f = fopen(p, "wb");
    fwrite("1 1:1\n1 2\0:1\n", 1, 13, f);
    fclose(f);
    refused(p, &o, "nul.svm:2: a NUL byte");
    free(p);
}

Test(textdata, lines_longer_than_the_first_buffer_are_read_whole)
{
    size_t n = 200000;
    char *text = malloc(n * 12 + 16);
    size_t len = (size_t)sprintf(text, "1");
    for (size_t i = 1; i <= n; i++)
        len += (size_t)sprintf(text + len, " %zu:1", i);
    strcpy(text + len, "\n0 5:2");
    char *p = put("long.svm", text);
    gdml_text_options o = {.dim = n};
    gdml_dataset ds = load(p, &o);
    cr_assert_eq(ds.n, 2);
    cr_assert_eq(ds.x[n - 1], 1.0f);
    cr_assert_eq(ds.x[n + 4], 2.0f, "the last line, without a newline, is read");
    gdml_dataset_fini(&ds);
    free(text);
    free(p);
}

Test(textdata, a_text_split_writes_each_rows_region_as_it_was_read)
{
    /* 40 rows of 2 classes; the header goes first into every part. */
    char *text = malloc(4096);
    size_t len = (size_t)sprintf(text, "label,x\n");
    for (int i = 0; i < 40; i++)
        len += (size_t)sprintf(text + len, "%d,%d\n", i % 2, i);
    char *p = put("all.csv.gz", text);
    char names[2][GDML_NAME_MAX] = {"a", "b"};
    gdml_split_part parts[2];
    size_t n = 0;
    gdml_text_options o = csv();
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_split_text_file(p, &o, names, 2, GDML_SPLIT_IID, 1, 7, dir, parts, &n, &e),
                 GDML_OK, "%s", e.text);
    cr_assert_eq(n, 40);
    cr_assert_eq(parts[0].samples + parts[1].samples, 40);
    cr_assert_eq(parts[0].samples, 20, "IID: sizes differ by at most one");
    bool seen[40] = {false};
    for (int r = 0; r < 2; r++) {
        char part[4200];
        snprintf(part, sizeof part, "%s/%s/train.csv", dir, names[r]);
        char *got = gdml_test_read_file(part);
        cr_assert_not_null(got);
        cr_assert_eq(strncmp(got, "label,x\n", 8), 0, "part %s lacks the header", names[r]);
        cr_assert_eq(parts[r].raw_bytes, strlen(got));
        cr_assert(parts[r].gzip_bytes > 20 && parts[r].gzip_bytes < parts[r].raw_bytes);
        free(got);
        gdml_dataset ds = load(part, &o);
        cr_assert_eq(ds.n, parts[r].samples);
        for (size_t i = 0; i < ds.n; i++) {
            int v = (int)ds.x[i];
            cr_assert(!seen[v], "row %d is in two parts", v);
            seen[v] = true;
            cr_assert_eq(ds.y[i], v % 2, "row %d lost its label", v);
        }
        cr_assert_eq(parts[r].per_class[0] + parts[r].per_class[1], ds.n);
        gdml_dataset_fini(&ds);
    }
    free(text);
    free(p);
}

Test(textdata, a_libsvm_split_is_deterministic_and_keeps_every_row)
{
    char *text = malloc(8192);
    size_t len = 0;
    for (int i = 0; i < 100; i++)
        len += (size_t)sprintf(text + len, "%d %d:1\n", i % 3, i + 1);
    char *p = put("all.svm", text);
    char names[3][GDML_NAME_MAX] = {"x", "y", "z"};
    gdml_split_part a[3], b[3];
    size_t n;
    gdml_text_options o = {0};
    cr_assert_eq(gdml_split_text_file(p, &o, names, 3, GDML_SPLIT_DIRICHLET, 0.5, 3, dir, a, &n,
                                      NULL),
                 GDML_OK);
    cr_assert_eq(gdml_split_text_file(p, &o, names, 3, GDML_SPLIT_DIRICHLET, 0.5, 3, dir, b, &n,
                                      NULL),
                 GDML_OK);
    uint64_t total = 0;
    for (int r = 0; r < 3; r++) {
        cr_assert_eq(a[r].samples, b[r].samples, "same seed, same split");
        total += a[r].samples;
        char part[4200];
        snprintf(part, sizeof part, "%s/%s/train.svm", dir, names[r]);
        o.dim = 100;
        gdml_dataset ds = load(part, &o);
        cr_assert_eq(ds.n, a[r].samples);
        gdml_dataset_fini(&ds);
    }
    cr_assert_eq(total, 100);
    free(text);
    free(p);
}
