/* test_dataset.c - loading IDX images and labels into float rows, by shard. */
#include "dataset.h"
#include "idx.h"
#include "support.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A test directory holding images (n x 2 x 3) and labels (m) files. */
typedef struct files {
    char *dir, *images, *labels;
} files;

/* Pixel j of image i, and label i: easy to recompute from the indices. */
static uint8_t pixel(size_t i, size_t j)
{
    return (uint8_t)((i * 6 + j) * 37 % 256);
}

static uint8_t label(size_t i)
{
    return (uint8_t)(i * 3 % 7);
}

/* Returns dir/name in a malloc'd string. */
static char *path_in(const char *dir, const char *name)
{
    size_t len = strlen(dir) + strlen(name) + 2;
    char *p = malloc(len);
    cr_assert_not_null(p);
    snprintf(p, len, "%s/%s", dir, name);
    return p;
}

static files make_files(uint32_t n, uint32_t m, bool gz)
{
    files f = {.dir = gdml_test_tmpdir()};
    f.images = path_in(f.dir, gz ? "images-idx3-ubyte.gz" : "images-idx3-ubyte");
    f.labels = path_in(f.dir, gz ? "labels-idx1-ubyte.gz" : "labels-idx1-ubyte");
    gdml_idx img = {.ndim = 3, .dims = {n, 2, 3}, .size = (size_t)n * 6};
    gdml_idx lab = {.ndim = 1, .dims = {m}, .size = m};
    img.data = malloc(img.size);
    lab.data = malloc(lab.size);
    cr_assert(img.data && lab.data);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < 6; j++)
            img.data[i * 6 + j] = pixel(i, j);
    for (size_t i = 0; i < m; i++)
        lab.data[i] = label(i);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_write(f.images, &img, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_idx_write(f.labels, &lab, &e), GDML_OK, "%s", e.text);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
    return f;
}

static void free_files(files *f)
{
    free(f->images);
    free(f->labels);
    gdml_test_rmtree(f->dir);
}

Test(dataset, loads_everything_scaled)
{
    files f = make_files(20, 20, true);
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 0, 1, &ds, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(ds.n, 20);
    cr_assert_eq(ds.dim, 6);
    cr_assert_eq(ds.classes, 7); /* labels 0..6 */
    for (size_t i = 0; i < 20; i++) {
        cr_assert_eq(ds.y[i], label(i));
        for (size_t j = 0; j < 6; j++) {
            float v = ds.x[i * 6 + j];
            cr_assert(v >= 0.0f && v <= 1.0f);
            cr_assert_float_eq(v, pixel(i, j) / 255.0f, 1e-7f, "x[%zu][%zu]", i, j);
        }
    }
    gdml_dataset_fini(&ds);
    cr_assert_null(ds.x);
    cr_assert_eq(ds.n, 0);
    free_files(&f);
}

Test(dataset, extreme_pixels_map_to_zero_and_one)
{
    char *dir = gdml_test_tmpdir();
    char *images = path_in(dir, "i"), *labels = path_in(dir, "l");
    uint8_t px[4] = {0, 255, 128, 1}, lb[1] = {0};
    gdml_idx img = {.ndim = 3, .dims = {1, 2, 2}, .data = px, .size = 4};
    gdml_idx lab = {.ndim = 1, .dims = {1}, .data = lb, .size = 1};
    cr_assert_eq(gdml_idx_write(images, &img, NULL), GDML_OK);
    cr_assert_eq(gdml_idx_write(labels, &lab, NULL), GDML_OK);
    gdml_dataset ds = {0};
    cr_assert_eq(gdml_dataset_load_idx(images, labels, 0, 1, &ds, NULL), GDML_OK);
    cr_assert_eq(ds.x[0], 0.0f);
    cr_assert_eq(ds.x[1], 1.0f);
    cr_assert_eq(ds.x[2], 128.0f / 255.0f);
    cr_assert_eq(ds.x[3], 1.0f / 255.0f);
    cr_assert_eq(ds.classes, 1);
    gdml_dataset_fini(&ds);
    free(images);
    free(labels);
    gdml_test_rmtree(dir);
}

Test(dataset, shards_take_every_kth_row)
{
    files f = make_files(10, 10, false);
    size_t total = 0;
    for (size_t s = 0; s < 3; s++) {
        gdml_dataset ds = {0};
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, s, 3, &ds, &e), GDML_OK, "%s",
                     e.text);
        /* Rows 0,3,6,9 / 1,4,7 / 2,5,8. */
        cr_assert_eq(ds.n, s == 0 ? 4 : 3, "shard %zu has %zu rows", s, ds.n);
        for (size_t r = 0; r < ds.n; r++) {
            size_t i = s + 3 * r;
            cr_assert_eq(ds.y[r], label(i));
            for (size_t j = 0; j < 6; j++)
                cr_assert_float_eq(ds.x[r * 6 + j], pixel(i, j) / 255.0f, 1e-7f);
        }
        total += ds.n;
        gdml_dataset_fini(&ds);
    }
    cr_assert_eq(total, 10);
    free_files(&f);
}

Test(dataset, count_mismatch_names_both_files)
{
    files f = make_files(10, 9, false);
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 0, 1, &ds, &e), GDML_ERR_FORMAT);
    cr_assert_not_null(strstr(e.text, f.images), "%s", e.text);
    cr_assert_not_null(strstr(e.text, f.labels), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "9 labels"), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "10 images"), "%s", e.text);
    cr_assert_null(ds.x);
    free_files(&f);
}

Test(dataset, empty_shard)
{
    files f = make_files(3, 3, false);
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 4, 5, &ds, &e), GDML_ERR_FORMAT);
    cr_assert_not_null(strstr(e.text, f.images), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "empty"), "%s", e.text);
    cr_assert_null(ds.x);
    /* The last non-empty shard still loads. */
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 2, 5, &ds, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(ds.n, 1);
    cr_assert_eq(ds.y[0], label(2));
    gdml_dataset_fini(&ds);
    free_files(&f);
}

Test(dataset, bad_shard_arguments)
{
    files f = make_files(3, 3, false);
    gdml_dataset ds = {0};
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 0, 0, &ds, NULL), GDML_ERR_INVALID);
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.labels, 2, 2, &ds, NULL), GDML_ERR_INVALID);
    free_files(&f);
}

Test(dataset, swapped_files_are_refused)
{
    files f = make_files(5, 5, false);
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_idx(f.labels, f.images, 0, 1, &ds, &e), GDML_ERR_FORMAT);
    cr_assert_not_null(strstr(e.text, f.labels), "%s", e.text);
    cr_assert_not_null(strstr(e.text, "not an images file"), "%s", e.text);
    /* Images given as labels too. */
    cr_assert_eq(gdml_dataset_load_idx(f.images, f.images, 0, 1, &ds, &e), GDML_ERR_FORMAT);
    cr_assert_not_null(strstr(e.text, "not a labels file"), "%s", e.text);
    free_files(&f);
}

Test(dataset, missing_labels_file)
{
    files f = make_files(5, 5, false);
    char *missing = path_in(f.dir, "nope");
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_dataset_load_idx(f.images, missing, 0, 1, &ds, &e), GDML_ERR_IO);
    cr_assert_not_null(strstr(e.text, missing), "%s", e.text);
    free(missing);
    free_files(&f);
}

Test(dataset, fini_accepts_zeroed_and_null)
{
    gdml_dataset ds = {0};
    gdml_dataset_fini(&ds);
    gdml_dataset_fini(NULL);
}

Test(dataset, fashion_mnist_test_set_shard)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("Fashion-MNIST is not installed");
    gdml_dataset ds = {0};
    gdml_errmsg e = {{0}};
    /* gdml_test_fashion returns static storage: copy the first path before the second call. */
    char images[512];
    snprintf(images, sizeof images, "%s", gdml_test_fashion("t10k-images-idx3-ubyte.gz"));
    const char *labels = gdml_test_fashion("t10k-labels-idx1-ubyte.gz");
    cr_assert_eq(gdml_dataset_load_idx(images, labels, 1, 4, &ds, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(ds.n, 2500);
    cr_assert_eq(ds.dim, 784);
    cr_assert_eq(ds.classes, 10);
    gdml_dataset_fini(&ds);
}
