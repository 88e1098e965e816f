/* test_synth.c - the synthetic sparse data set: parsed back, labelled by its true model. */
#include "support.h"
#include "synth.h"
#include "textdata.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char *dir;

static void setup(void)
{
    dir = gdml_test_tmpdir();
}

static void teardown(void)
{
    gdml_test_rmtree(dir);
}

TestSuite(synth, .init = setup, .fini = teardown);

static char *path_of(const char *name)
{
    char *p = malloc(strlen(dir) + strlen(name) + 2);
    cr_assert_not_null(p);
    sprintf(p, "%s/%s", dir, name);
    return p;
}

Test(synth, rows_parse_back_with_nnz_ones_labelled_by_the_true_model)
{
    gdml_synth_options opt = {.samples = 2000, .features = 300, .nnz = 7, .seed = 3, .noise = 0.3};
    char *data = path_of("s.svm.gz"), *model = path_of("w.txt");
    gdml_synth_result res;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_synth_write(data, model, &opt, &res, &e), GDML_OK, "%s", e.text);
    gdml_text_options to = {.dim = 300};
    gdml_dataset ds = {0};
    cr_assert_eq(gdml_dataset_load_text(data, &to, 0, 1, &ds, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(ds.n, 2000);
    cr_assert_eq(ds.classes, 2);
    float *w = malloc(300 * sizeof *w);
    gdml_synth_weights(&opt, w);
    /* The model file holds the same weights, one per line. */
    char *text = gdml_test_read_file(model);
    cr_assert_not_null(text);
    char *p = text;
    for (int j = 0; j < 300; j++) {
        char *end;
        float v = strtof(p, &end);
        cr_assert(end != p, "line %d of the model file", j + 1);
        cr_assert_float_eq(v, w[j], 1e-6);
        p = end;
    }
    free(text);
    uint64_t right = 0, positives = 0;
    for (size_t i = 0; i < ds.n; i++) {
        double m = 0;
        int ones = 0;
        for (size_t j = 0; j < 300; j++) {
            float x = ds.x[i * 300 + j];
            cr_assert(x == 0 || x == 1);
            ones += x == 1;
            m += x * w[j];
        }
        cr_assert_eq(ones, 7, "row %zu has %d features", i, ones);
        right += ds.y[i] == (m > 0);
        positives += ds.y[i];
    }
    cr_assert_eq(positives, res.positives);
    cr_assert_float_eq(res.true_accuracy, (double)right / 2000, 1e-12);
    /* Noise 0.3 on a margin of about N(0, 1) flips roughly a tenth of the labels. */
    cr_assert(res.true_accuracy > 0.8 && res.true_accuracy < 0.97, "%f", res.true_accuracy);
    cr_assert(positives > 800 && positives < 1200, "%llu", (unsigned long long)positives);
    gdml_dataset_fini(&ds);
    free(w);
    free(data);
    free(model);
}

Test(synth, the_same_seed_writes_the_same_file_and_no_noise_is_separable)
{
    gdml_synth_options opt = {.samples = 300, .features = 50, .nnz = 10, .seed = 9};
    char *a = path_of("a.svm"), *b = path_of("b.svm"), *c = path_of("c.svm");
    gdml_synth_result ra, rb, rc;
    cr_assert_eq(gdml_synth_write(a, NULL, &opt, &ra, NULL), GDML_OK);
    cr_assert_eq(gdml_synth_write(b, NULL, &opt, &rb, NULL), GDML_OK);
    opt.seed = 10;
    cr_assert_eq(gdml_synth_write(c, NULL, &opt, &rc, NULL), GDML_OK);
    char *ta = gdml_test_read_file(a), *tb = gdml_test_read_file(b), *tc = gdml_test_read_file(c);
    cr_assert_str_eq(ta, tb);
    cr_assert_str_neq(ta, tc, "another seed, other labels");
    cr_assert_eq(strlen(ta), ra.bytes);
    cr_assert_eq(ra.true_accuracy, 1.0, "without noise the true model is always right");
    free(ta);
    free(tb);
    free(tc);
    free(a);
    free(b);
    free(c);
}

Test(synth, options_out_of_range_are_refused)
{
    char *p = path_of("x.svm");
    gdml_synth_options bad[] = {
        {.samples = 0, .features = 10, .nnz = 1},
        {.samples = 1, .features = 10, .nnz = 11},
        {.samples = 1, .features = 10, .nnz = 0},
        {.samples = 1, .features = 10, .nnz = 1, .noise = -1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_synth_write(p, NULL, &bad[i], NULL, &e), GDML_ERR_INVALID, "case %zu", i);
        cr_assert(strstr(e.text, "nnz 1..features"), "%s", e.text);
    }
    gdml_synth_options ok = {.samples = 1, .features = 10, .nnz = 1};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_synth_write("/nonexistent/dir/x.svm", NULL, &ok, NULL, &e), GDML_ERR_IO);
    cr_assert(strstr(e.text, "/nonexistent/dir/x.svm"), "%s", e.text);
    free(p);
}
