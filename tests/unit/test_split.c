/* test_split.c - IID and Dirichlet assignment, and writing each region's part. */
#include "idx.h"
#include "rng.h"
#include "split.h"
#include "support.h"
#include "util.h"

#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CLASSES 10

/* n labels, balanced over CLASSES classes in a seeded random order; malloc'd. */
static uint8_t *balanced_labels(size_t n, uint64_t seed)
{
    uint8_t *y = malloc(n);
    uint32_t *perm = malloc(n * sizeof *perm);
    cr_assert(y && perm);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    gdml_rng r;
    gdml_rng_seed(&r, seed);
    gdml_rng_shuffle_u32(&r, perm, n);
    for (size_t i = 0; i < n; i++)
        y[perm[i]] = (uint8_t)(i % CLASSES);
    free(perm);
    return y;
}

/* Per-region sizes and class counts of an assignment; checks every region is valid. */
typedef struct tally {
    size_t size[64];
    size_t per_class[64][CLASSES];
} tally;

static void count(const uint8_t *y, const uint32_t *region_of, size_t n, unsigned regions, tally *t)
{
    memset(t, 0, sizeof *t);
    for (size_t i = 0; i < n; i++) {
        cr_assert(region_of[i] < regions, "sample %zu in region %u of %u", i, region_of[i],
                  regions);
        t->size[region_of[i]]++;
        t->per_class[region_of[i]][y[i]]++;
    }
}

/* Mean over regions of the largest class's share of the region. */
static double mean_max_share(const tally *t, unsigned regions)
{
    double sum = 0.0;
    for (unsigned r = 0; r < regions; r++) {
        size_t most = 0;
        for (int c = 0; c < CLASSES; c++)
            most = t->per_class[r][c] > most ? t->per_class[r][c] : most;
        sum += t->size[r] ? (double)most / (double)t->size[r] : 0.0;
    }
    return sum / regions;
}

static uint32_t *assign(const uint8_t *y, size_t n, unsigned regions, gdml_split_mode mode,
                        double alpha, uint64_t seed)
{
    uint32_t *region_of = malloc(n * sizeof *region_of);
    cr_assert_not_null(region_of);
    gdml_errmsg e = {{0}};
    gdml_err err = gdml_split_assign(y, n, CLASSES, regions, mode, alpha, seed, region_of, &e);
    cr_assert_eq(err, GDML_OK, "%s", e.text);
    return region_of;
}

Test(split, mode_parse)
{
    cr_assert_eq(gdml_split_mode_parse("iid"), GDML_SPLIT_IID);
    cr_assert_eq(gdml_split_mode_parse("dirichlet"), GDML_SPLIT_DIRICHLET);
    cr_assert_eq(gdml_split_mode_parse("Dirichlet"), -1);
    cr_assert_eq(gdml_split_mode_parse(""), -1);
}

Test(split, iid_sizes_and_class_mix)
{
    const size_t n = 10001;
    const unsigned regions = 4;
    uint8_t *y = balanced_labels(n, 1);
    uint32_t *region_of = assign(y, n, regions, GDML_SPLIT_IID, 0.0, 42);
    tally t;
    count(y, region_of, n, regions, &t);
    size_t lo = n, hi = 0;
    for (unsigned r = 0; r < regions; r++) {
        lo = t.size[r] < lo ? t.size[r] : lo;
        hi = t.size[r] > hi ? t.size[r] : hi;
        /* Each class near a tenth of the region: 250 expected, sd ~15. */
        for (int c = 0; c < CLASSES; c++)
            cr_assert(t.per_class[r][c] > 180 && t.per_class[r][c] < 320,
                      "region %u has %zu of class %d", r, t.per_class[r][c], c);
    }
    cr_assert_leq(hi - lo, 1, "IID sizes range from %zu to %zu", lo, hi);
    free(y);
    free(region_of);
}

Test(split, deterministic_per_seed)
{
    const size_t n = 5000;
    uint8_t *y = balanced_labels(n, 2);
    gdml_split_mode modes[] = {GDML_SPLIT_IID, GDML_SPLIT_DIRICHLET};
    for (int m = 0; m < 2; m++) {
        uint32_t *a = assign(y, n, 5, modes[m], 0.5, 7);
        uint32_t *b = assign(y, n, 5, modes[m], 0.5, 7);
        uint32_t *c = assign(y, n, 5, modes[m], 0.5, 8);
        cr_assert_arr_eq(a, b, n * sizeof *a, "mode %d: same seed, different split", m);
        size_t differ = 0;
        for (size_t i = 0; i < n; i++)
            differ += a[i] != c[i];
        cr_assert_gt(differ, n / 4, "mode %d: seeds 7 and 8 differ in %zu samples", m, differ);
        free(a);
        free(b);
        free(c);
    }
    free(y);
}

Test(split, dirichlet_small_alpha_skews_labels)
{
    const size_t n = 20000;
    const unsigned regions = 5;
    uint8_t *y = balanced_labels(n, 3);
    tally iid, skew, flat;
    uint32_t *a = assign(y, n, regions, GDML_SPLIT_IID, 0.0, 11);
    count(y, a, n, regions, &iid);
    uint32_t *b = assign(y, n, regions, GDML_SPLIT_DIRICHLET, 0.1, 11);
    count(y, b, n, regions, &skew);
    uint32_t *c = assign(y, n, regions, GDML_SPLIT_DIRICHLET, 1000.0, 11);
    count(y, c, n, regions, &flat);
    double m_iid = mean_max_share(&iid, regions), m_skew = mean_max_share(&skew, regions),
           m_flat = mean_max_share(&flat, regions);
    cr_log_info("mean max class share: iid %.3f, alpha 0.1 %.3f, alpha 1000 %.3f", m_iid, m_skew,
                m_flat);
    /* IID is near 0.1 plus noise; alpha 0.1 concentrates each region on few classes. */
    cr_assert_lt(m_iid, 0.13, "iid %g", m_iid);
    cr_assert_gt(m_skew, 0.3, "alpha 0.1 gives only %g", m_skew);
    cr_assert_lt(m_flat, 0.13, "alpha 1000 gives %g", m_flat);
    /* Alpha 1000: region sizes and class mixes near n / regions. */
    for (unsigned r = 0; r < regions; r++) {
        cr_assert(flat.size[r] > 3700 && flat.size[r] < 4300, "region %u: %zu", r, flat.size[r]);
        for (int k = 0; k < CLASSES; k++)
            cr_assert(flat.per_class[r][k] > 330 && flat.per_class[r][k] < 470,
                      "region %u class %d: %zu", r, k, flat.per_class[r][k]);
    }
    free(y);
    free(a);
    free(b);
    free(c);
}

Test(split, dirichlet_minimum_region_size)
{
    /* Tiny alpha over many regions: most draws leave some region short and are redrawn. */
    const size_t n = 2000;
    uint8_t *y = balanced_labels(n, 4);
    for (uint64_t seed = 0; seed < 5; seed++) {
        uint32_t *region_of = assign(y, n, 8, GDML_SPLIT_DIRICHLET, 0.3, seed);
        tally t;
        count(y, region_of, n, 8, &t);
        for (unsigned r = 0; r < 8; r++)
            cr_assert_geq(t.size[r], 10, "seed %llu region %u has %zu samples",
                          (unsigned long long)seed, r, t.size[r]);
        free(region_of);
    }
    /* With few samples the floor is n / regions: 30 samples over 4 regions, 7 each. */
    uint32_t region_of[30];
    for (uint64_t seed = 0; seed < 5; seed++) {
        gdml_errmsg e = {{0}};
        cr_assert_eq(
            gdml_split_assign(y, 30, CLASSES, 4, GDML_SPLIT_DIRICHLET, 50.0, seed, region_of, &e),
            GDML_OK, "%s", e.text);
        tally t;
        count(y, region_of, 30, 4, &t);
        for (unsigned r = 0; r < 4; r++)
            cr_assert_geq(t.size[r], 7, "region %u has %zu", r, t.size[r]);
    }
    free(y);
}

Test(split, dirichlet_impossible_minimum)
{
    /* One class over 64 regions with alpha 0.001: a draw almost never spreads it. */
    uint8_t y[640] = {0};
    uint32_t region_of[640];
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_split_assign(y, 640, 1, 64, GDML_SPLIT_DIRICHLET, 0.001, 1, region_of, &e),
                 GDML_ERR_INVALID);
    cr_assert_not_null(strstr(e.text, "1000 tries"), "%s", e.text);
}

Test(split, one_region_takes_all)
{
    uint8_t *y = balanced_labels(100, 5);
    for (int m = 0; m < 2; m++) {
        uint32_t *region_of = assign(y, 100, 1, m, 0.5, 1);
        for (size_t i = 0; i < 100; i++)
            cr_assert_eq(region_of[i], 0);
        free(region_of);
    }
    free(y);
}

Test(split, invalid_arguments)
{
    uint8_t y[20] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9};
    uint32_t region_of[20];
    for (int i = 0; i < 20; i++)
        region_of[i] = 77;
    gdml_errmsg e = {{0}};
#define INVALID(...)                                                                               \
    cr_assert_eq(gdml_split_assign(__VA_ARGS__, region_of, &e), GDML_ERR_INVALID, "%s", e.text)
    INVALID(y, 20, 10, 0, GDML_SPLIT_IID, 1.0, 1);
    INVALID(y, 20, 5, 2, GDML_SPLIT_IID, 1.0, 1); /* label 9 >= 5 classes */
    cr_assert_not_null(strstr(e.text, "label 5"), "%s", e.text);
    INVALID(y, 20, 10, 2, GDML_SPLIT_DIRICHLET, 0.0, 1);
    INVALID(y, 20, 10, 2, GDML_SPLIT_DIRICHLET, -1.0, 1);
    INVALID(y, 20, 10, 21, GDML_SPLIT_IID, 1.0, 1); /* fewer samples than regions */
    INVALID(y, 0, 10, 1, GDML_SPLIT_IID, 1.0, 1);
    INVALID(y, 20, 0, 2, GDML_SPLIT_IID, 1.0, 1);
    INVALID(y, 20, 10, 2, (gdml_split_mode)7, 1.0, 1);
#undef INVALID
    for (int i = 0; i < 20; i++)
        cr_assert_eq(region_of[i], 77, "region_of changed on failure");
}

/* Reads dir/name/file into out. */
static void read_part(const char *dir, const char *name, const char *file, gdml_idx *out)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(path, out, &e), GDML_OK, "%s", e.text);
}

static uint64_t size_on_disk(const char *dir, const char *name, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0, "stat %s", path);
    return (uint64_t)st.st_size;
}

/* Size of idx written as a .gz file by gdml_idx_write (gzip level 6). */
static uint64_t gz_file_size(const char *dir, const gdml_idx *idx)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/probe.gz", dir);
    cr_assert_eq(gdml_idx_write(path, idx, NULL), GDML_OK);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    remove(path);
    return (uint64_t)st.st_size;
}

/*
 * Splits images/labels over regions, writes the parts, and checks that each
 * part reads back as exactly its samples in their original order, with
 * consistent byte counts.
 */
static void write_and_check(const gdml_idx *img, const gdml_idx *lab, unsigned regions,
                            gdml_split_mode mode, double alpha)
{
    char *dir = gdml_test_tmpdir();
    char out_dir[4200];
    snprintf(out_dir, sizeof out_dir, "%s/split/parts", dir); /* not there yet: mkdir -p */
    size_t n = lab->dims[0], row = img->size / n;
    char names[8][GDML_NAME_MAX] = {"us-east", "eu-west", "ap-south", "r3", "r4", "r5", "r6", "r7"};
    uint32_t *region_of = malloc(n * sizeof *region_of);
    cr_assert_not_null(region_of);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_split_assign(lab->data, n, CLASSES, regions, mode, alpha, 5, region_of, &e),
                 GDML_OK, "%s", e.text);
    gdml_split_part parts[8];
    int64_t t0 = gdml_now_ms();
    cr_assert_eq(gdml_split_write(img, lab, region_of, names, regions, out_dir, 1, parts, &e),
                 GDML_OK, "%s", e.text);
    cr_log_info("split_write of %zu samples over %u regions: %lld ms", n, regions,
                (long long)(gdml_now_ms() - t0));

    uint64_t total = 0;
    for (unsigned r = 0; r < regions; r++) {
        gdml_idx pi = {0}, pl = {0};
        read_part(out_dir, names[r], "train-images-idx3-ubyte", &pi);
        read_part(out_dir, names[r], "train-labels-idx1-ubyte", &pl);
        cr_assert_str_eq(parts[r].name, names[r]);
        cr_assert_eq(pi.ndim, img->ndim);
        for (uint32_t d = 1; d < img->ndim; d++)
            cr_assert_eq(pi.dims[d], img->dims[d]);
        cr_assert_eq(pi.dims[0], parts[r].samples);
        cr_assert_eq(pl.dims[0], parts[r].samples);
        size_t k = 0;
        uint64_t per_class[CLASSES] = {0};
        for (size_t i = 0; i < n; i++) {
            if (region_of[i] != r)
                continue;
            cr_assert_lt(k, pl.size);
            cr_assert_eq(pl.data[k], lab->data[i], "region %u sample %zu", r, k);
            cr_assert(memcmp(pi.data + k * row, img->data + i * row, row) == 0,
                      "region %u sample %zu (source %zu) differs", r, k, i);
            per_class[lab->data[i]]++;
            k++;
        }
        cr_assert_eq(k, parts[r].samples);
        for (int c = 0; c < CLASSES; c++)
            cr_assert_eq(parts[r].per_class[c], per_class[c]);
        cr_assert_eq(parts[r].raw_bytes,
                     size_on_disk(out_dir, names[r], "train-images-idx3-ubyte") +
                         size_on_disk(out_dir, names[r], "train-labels-idx1-ubyte"));
        cr_assert_eq(parts[r].raw_bytes, gdml_idx_file_size(&pi) + gdml_idx_file_size(&pl));
        cr_assert_lt(parts[r].gzip_bytes, parts[r].raw_bytes);
        /*
         * The count is what gzip level 6 makes of the same files. With zlib both
         * are byte-identical; allow a little slack for deflate implementations
         * whose output depends on how the input is chunked.
         */
        uint64_t gz = gz_file_size(dir, &pi) + gz_file_size(dir, &pl);
        uint64_t diff =
            gz > parts[r].gzip_bytes ? gz - parts[r].gzip_bytes : parts[r].gzip_bytes - gz;
        cr_assert_leq(diff, 64 + gz / 100, "region %u: counted %llu gzip bytes, gzopen wrote %llu",
                      r, (unsigned long long)parts[r].gzip_bytes, (unsigned long long)gz);
        total += parts[r].samples;
        gdml_idx_fini(&pi);
        gdml_idx_fini(&pl);
    }
    cr_assert_eq(total, n);

    /* Without gzip the compressed count stays zero. */
    gdml_split_part plain[8];
    cr_assert_eq(gdml_split_write(img, lab, region_of, names, regions, out_dir, 0, plain, &e),
                 GDML_OK, "%s", e.text);
    for (unsigned r = 0; r < regions; r++) {
        cr_assert_eq(plain[r].gzip_bytes, 0);
        cr_assert_eq(plain[r].raw_bytes, parts[r].raw_bytes);
    }
    free(region_of);
    gdml_test_rmtree(dir);
}

/* Synthetic images like MNIST's: a dark background with a bright blob per class. */
static void synthetic(size_t n, gdml_idx *img, gdml_idx *lab)
{
    *lab = (gdml_idx){.ndim = 1, .dims = {(uint32_t)n}, .size = n};
    *img = (gdml_idx){.ndim = 3, .dims = {(uint32_t)n, 8, 8}, .size = n * 64};
    lab->data = balanced_labels(n, 6);
    img->data = calloc(img->size, 1);
    cr_assert_not_null(img->data);
    gdml_rng r;
    gdml_rng_seed(&r, 9);
    for (size_t i = 0; i < n; i++) {
        int c = lab->data[i];
        for (int p = 0; p < 16; p++) {
            int pos = (c * 5 + p) % 64;
            img->data[i * 64 + pos] = (uint8_t)(128 + gdml_rng_below(&r, 128));
        }
    }
}

Test(split, write_iid_synthetic)
{
    gdml_idx img, lab;
    synthetic(3001, &img, &lab);
    write_and_check(&img, &lab, 3, GDML_SPLIT_IID, 0.0);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
}

Test(split, write_dirichlet_synthetic)
{
    gdml_idx img, lab;
    synthetic(2000, &img, &lab);
    write_and_check(&img, &lab, 5, GDML_SPLIT_DIRICHLET, 0.2);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
}

Test(split, write_fashion_mnist_test_set)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("Fashion-MNIST is not installed");
    gdml_idx img = {0}, lab = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-images-idx3-ubyte.gz"), &img, &e), GDML_OK,
                 "%s", e.text);
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-labels-idx1-ubyte.gz"), &lab, &e), GDML_OK,
                 "%s", e.text);
    write_and_check(&img, &lab, 3, GDML_SPLIT_DIRICHLET, 0.5);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
}

Test(split, write_refuses_bad_arguments)
{
    char *dir = gdml_test_tmpdir();
    gdml_idx img, lab;
    synthetic(30, &img, &lab);
    uint32_t region_of[30];
    for (int i = 0; i < 30; i++)
        region_of[i] = (uint32_t)(i % 3);
    char names[4][GDML_NAME_MAX] = {"a", "b", "c", "d"};
    gdml_split_part parts[4];
    gdml_errmsg e = {{0}};

    region_of[7] = 3;
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 0, parts, &e),
                 GDML_ERR_INVALID);
    cr_assert_not_null(strstr(e.text, "sample 7"), "%s", e.text);
    region_of[7] = 1;

    /* Region d gets nothing: an IDX file cannot have 0 rows. */
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 4, dir, 0, parts, &e),
                 GDML_ERR_INVALID);
    cr_assert_not_null(strstr(e.text, "'d' has no samples"), "%s", e.text);

    snprintf(names[1], GDML_NAME_MAX, "a");
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 0, parts, &e),
                 GDML_ERR_INVALID);
    snprintf(names[1], GDML_NAME_MAX, "..");
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 0, parts, &e),
                 GDML_ERR_INVALID);
    snprintf(names[1], GDML_NAME_MAX, "b");

    lab.dims[0] = 29;
    lab.size = 29;
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 0, parts, &e),
                 GDML_ERR_INVALID);
    lab.dims[0] = 30;
    lab.size = 30;

    /* A file where the region directory should go. */
    char blocker[4200];
    snprintf(blocker, sizeof blocker, "%s/b", dir);
    gdml_test_write_file(blocker, "not a directory\n");
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 0, parts, &e), GDML_ERR_IO);
    cr_assert_not_null(strstr(e.text, blocker), "%s", e.text);

    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
    gdml_test_rmtree(dir);
}

Test(split, full_fashion_mnist_train_split, .timeout = 60)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("Fashion-MNIST is not installed");
    char *dir = gdml_test_tmpdir();
    int64_t t0 = gdml_now_ms();
    gdml_idx img = {0}, lab = {0};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("train-images-idx3-ubyte.gz"), &img, &e), GDML_OK,
                 "%s", e.text);
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("train-labels-idx1-ubyte.gz"), &lab, &e), GDML_OK,
                 "%s", e.text);
    int64_t t1 = gdml_now_ms();
    size_t n = lab.dims[0];
    cr_assert_eq(n, 60000);
    uint32_t *region_of = malloc(n * sizeof *region_of);
    cr_assert_not_null(region_of);
    cr_assert_eq(
        gdml_split_assign(lab.data, n, CLASSES, 3, GDML_SPLIT_DIRICHLET, 0.5, 42, region_of, &e),
        GDML_OK, "%s", e.text);
    int64_t t2 = gdml_now_ms();
    char names[3][GDML_NAME_MAX] = {"us-east", "eu-west", "ap-south"};
    gdml_split_part parts[3];
    cr_assert_eq(gdml_split_write(&img, &lab, region_of, names, 3, dir, 1, parts, &e), GDML_OK,
                 "%s", e.text);
    int64_t t3 = gdml_now_ms();
    cr_log_info("Fashion-MNIST train: read %lld ms, assign %lld ms, write+gzip %lld ms",
                (long long)(t1 - t0), (long long)(t2 - t1), (long long)(t3 - t2));
    uint64_t samples = 0, raw = 0, gz = 0;
    for (int r = 0; r < 3; r++) {
        samples += parts[r].samples;
        raw += parts[r].raw_bytes;
        gz += parts[r].gzip_bytes;
        cr_log_info("%s: %llu samples, %llu raw bytes, %llu gzip bytes", parts[r].name,
                    (unsigned long long)parts[r].samples, (unsigned long long)parts[r].raw_bytes,
                    (unsigned long long)parts[r].gzip_bytes);
    }
    cr_assert_eq(samples, 60000);
    cr_assert_eq(raw, 60000ull * 785 + 3 * (16 + 8));
    /* The distributed files are ~30 MB gzipped together; the parts come out the same. */
    cr_assert(gz > 25000000 && gz < 35000000, "gzip total %llu", (unsigned long long)gz);
    free(region_of);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
    gdml_test_rmtree(dir);
}
