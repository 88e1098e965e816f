/*
 * test_big.c - a 100M-parameter job end to end (config/big-job.ini: an MLP
 * 784-63730-784-10 of 100,001,004 floats, 400 MB): one region, one worker,
 * three rounds through gdml-launch, then every stored version's size,
 * layout and checksums, and the disk the coordinator's store and the
 * region's checkpoints take. Its own meson suite ('big', run alone): it
 * moves about 4 GB through loopback, writes about 4 GB to its temporary
 * directory (removed after) and takes one to three minutes on two cores.
 * `meson test --no-suite big` leaves it out.
 */
#include "../support.h"

#include "idx.h"
#include "store.h"

#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* (784 + 1) * 63730 + (63730 + 1) * 784 + (784 + 1) * 10 */
#define BIG_PARAMS 100001004ull
#define BIG_LAYOUT "mlp 784 63730,784 10"
#define BIG_ROUNDS 3
#define TEST_ROWS 200 /* the coordinator scores the last version on this many test images */

/* Bytes the files directly in dir take on disk (st_blocks: LMDB files are sparse). */
static unsigned long long dir_bytes(const char *dir)
{
    DIR *d = opendir(dir);
    cr_assert_not_null(d, "no directory %s", dir);
    unsigned long long sum = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char path[4400];
        struct stat st;
        snprintf(path, sizeof path, "%s/%s", dir, de->d_name);
        if (de->d_name[0] != '.' && stat(path, &st) == 0 && S_ISREG(st.st_mode))
            sum += (unsigned long long)st.st_blocks * 512;
    }
    closedir(d);
    return sum;
}

/* Writes the first rows of Fashion-MNIST's test set as plain IDX files. */
static void write_test_set(const char *images, const char *labels, size_t rows)
{
    gdml_idx img = {0}, lab = {0};
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-images-idx3-ubyte.gz"), &img, NULL), GDML_OK);
    cr_assert_eq(gdml_idx_read(gdml_test_fashion("t10k-labels-idx1-ubyte.gz"), &lab, NULL), GDML_OK);
    img.dims[0] = lab.dims[0] = (uint32_t)rows;
    img.size = rows * img.dims[1] * img.dims[2];
    lab.size = rows;
    cr_assert_eq(gdml_idx_write(images, &img, NULL), GDML_OK);
    cr_assert_eq(gdml_idx_write(labels, &lab, NULL), GDML_OK);
    gdml_idx_fini(&img);
    gdml_idx_fini(&lab);
}

Test(big, a_100m_parameter_job_stores_every_version_whole, .timeout = 900)
{
    if (!gdml_test_have_fashion_mnist())
        cr_skip_test("dataset-fashion-mnist is not installed");
    char *dir = gdml_test_tmpdir();
    char run[4200], log[4200], images[4200], labels[4200], store[4300], ckpt[4300];
    snprintf(run, sizeof run, "%s/run", dir);
    snprintf(log, sizeof log, "%s/run.out", dir);
    snprintf(images, sizeof images, "%s/test-images", dir);
    snprintf(labels, sizeof labels, "%s/test-labels", dir);
    snprintf(store, sizeof store, "%s/store", run);
    snprintf(ckpt, sizeof ckpt, "%s/checkpoints/us-east", run);
    write_test_set(images, labels, TEST_ROWS);

    char *launch = gdml_test_program("gdml-launch");
    char *ini = gdml_test_source_path("config/big-job.ini");
    pid_t pid = gdml_test_spawn((char *[]){launch, "--config", ini, "--run-dir", run,
                                           "--test-images", images, "--test-labels", labels, NULL},
                                log);
    int rc = gdml_test_wait(pid, 840);
    char *out = gdml_test_read_file(log);
    cr_assert_eq(rc, 0, "the 100M-parameter job exited %d:\n%s", rc, out);
    cr_assert_eq(gdml_test_count_lines(out, "version "), BIG_ROUNDS, "%s", out);
    free(out);

    /* Every version is there with the whole model, under its layout. */
    gdml_store *s;
    gdml_store_options so = {.read_only = true};
    cr_assert_eq(gdml_store_open(store, &so, &s, NULL), GDML_OK);
    uint64_t count = 0;
    cr_assert_eq(gdml_store_count(s, &count, NULL), GDML_OK);
    cr_assert_eq(count, BIG_ROUNDS);
    for (uint64_t v = 1; v <= BIG_ROUNDS; v++) {
        gdml_version_meta meta;
        char layout[GDML_LAYOUT_MAX];
        cr_assert_eq(gdml_store_meta(s, v, &meta, NULL), GDML_OK, "version %llu is missing",
                     (unsigned long long)v);
        cr_assert_eq(gdml_store_layout(s, v, layout, NULL), GDML_OK);
        cr_assert_str_eq(layout, BIG_LAYOUT);
        cr_assert_eq(meta.n_tensors, 1, "fedavg keeps no merge state");
        cr_assert_str_eq(meta.tensors[0].name, "params");
        cr_assert_eq(meta.tensors[0].n, BIG_PARAMS, "version %llu holds %llu floats",
                     (unsigned long long)v, (unsigned long long)meta.tensors[0].n);
    }
    gdml_store_close(&s);

    /* Every checksum of every chunk and every version holds. */
    char *models = gdml_test_program("gdml-models");
    rc = gdml_test_run((char *[]){models, "verify", "--store", store, NULL}, 300, &out);
    cr_assert_eq(rc, 0, "%s", out);
    cr_assert(strstr(out, "3 versions checked: every checksum holds") && strstr(out, "0 missing"),
              "%s", out);
    free(out);
    free(models);

    /* Disk: the store holds its versions and little else; the region keeps
     * two checkpoints of the live model and its anchor, and writes a third. */
    unsigned long long model = BIG_PARAMS * 4, store_disk = dir_bytes(store),
                       ckpt_disk = dir_bytes(ckpt);
    cr_assert(store_disk >= BIG_ROUNDS * model && store_disk <= BIG_ROUNDS * model * 11 / 10,
              "the store takes %llu bytes for %d versions of %llu", store_disk, BIG_ROUNDS, model);
    cr_assert(ckpt_disk <= 3 * 2 * model * 11 / 10,
              "the region's checkpoints take %llu bytes; a model is %llu", ckpt_disk, model);
    free(launch);
    free(ini);
    gdml_test_rmtree(dir);
}
