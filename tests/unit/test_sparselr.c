/*
 * test_sparselr.c - sparse logistic regression: its gradient against finite
 * differences, that it touches only its keys, its layout's bounds, the keys
 * of a batch, evaluation on sparse rows, and dense/sparse data sets.
 */
#include "dataset.h"
#include "model.h"
#include "rng.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Three rows over 9 features; the last lists its features out of order. */
static const size_t ptr[] = {0, 3, 5, 8};
static const uint32_t idx[] = {0, 4, 7, 2, 4, 8, 1, 0};
static const float val[] = {1.0f, -2.0f, 0.5f, 3.0f, 1.0f, -1.0f, 2.0f, 0.25f};
static const uint8_t y[] = {1, 0, 1};

static gdml_layout sparse_layout(uint32_t inputs)
{
    gdml_layout l;
    gdml_errmsg e;
    cr_assert_eq(gdml_layout_make("sparselr", inputs, "", 2, &l, &e), GDML_OK, "%s", e.text);
    return l;
}

static gdml_csr rows(void)
{
    return (gdml_csr){.ptr = ptr, .idx = idx, .val = val};
}

/* The mean log loss in double, straight from the definition. */
static double ref_loss(const double *p, size_t inputs)
{
    double loss = 0;
    for (size_t i = 0; i < 3; i++) {
        double z = p[inputs];
        for (size_t k = ptr[i]; k < ptr[i + 1]; k++)
            z += p[idx[k]] * val[k];
        double prob = 1.0 / (1.0 + exp(-z));
        loss -= y[i] ? log(prob) : log(1.0 - prob);
    }
    return loss / 3;
}

Test(sparselr, gradient_matches_finite_differences_and_leaves_other_entries)
{
    gdml_layout l = sparse_layout(10); /* feature 3, 5, 6 and 9 are in no row */
    const gdml_model_ops *ops = gdml_model_find("sparselr");
    cr_assert(ops && ops->sparse);
    size_t np = ops->param_count(&l);
    cr_assert_eq(np, 11);
    float params[11], grad[11];
    double dp[11];
    gdml_rng r;
    gdml_rng_seed(&r, 3);
    for (size_t i = 0; i < np; i++)
        dp[i] = params[i] = (float)(0.5 * gdml_rng_normal(&r));
    for (size_t i = 0; i < np; i++)
        grad[i] = 42.0f; /* what is not a key must stay 42 */
    double loss = ops->loss_grad_csr(&l, params, rows(), y, 3, grad);
    cr_assert_float_eq(loss, ref_loss(dp, 10), 1e-5);
    for (size_t i = 0; i < np; i++) {
        bool key = i == 10;
        for (size_t k = 0; k < 8; k++)
            key |= idx[k] == i;
        if (!key) {
            cr_assert_eq(grad[i], 42.0f, "entry %zu is no key but was written", i);
            continue;
        }
        const double h = 1e-6;
        double saved = dp[i];
        dp[i] = saved + h;
        double up = ref_loss(dp, 10);
        dp[i] = saved - h;
        double down = ref_loss(dp, 10);
        dp[i] = saved;
        double fd = (up - down) / (2 * h);
        cr_assert(fabs(grad[i] - fd) <= 1e-5 + 1e-4 * fabs(fd), "param %zu: %.8f vs %.8f", i,
                  (double)grad[i], fd);
    }
}

Test(sparselr, zero_model_loss_is_log2_and_predicts_zero)
{
    gdml_layout l = sparse_layout(9);
    const gdml_model_ops *ops = gdml_model_find("sparselr");
    float params[10];
    ops->init(&l, params, 7);
    for (size_t i = 0; i < 10; i++)
        cr_assert_eq(params[i], 0.0f);
    cr_assert_float_eq(ops->loss_grad_csr(&l, params, rows(), y, 3, NULL), log(2.0), 1e-9);
    uint8_t pred[3];
    params[4] = -1.0f; /* row 0: -2 x -1 = 2 > 0; row 1: 1 x -1 < 0; row 2: 0 */
    ops->predict_csr(&l, params, rows(), 3, pred);
    cr_assert(pred[0] == 1 && pred[1] == 0 && pred[2] == 0);
}

Test(sparselr, huge_margins_stay_finite)
{
    gdml_layout l = sparse_layout(9);
    const gdml_model_ops *ops = gdml_model_find("sparselr");
    float params[10] = {0}, grad[10] = {0};
    params[9] = 1e4f; /* the bias alone: every row is surely positive */
    double loss = ops->loss_grad_csr(&l, params, rows(), y, 3, grad);
    cr_assert(isfinite(loss) && loss > 3000, "loss %g", loss); /* row 1 is wrong by 1e4 */
    for (size_t i = 0; i < 10; i++)
        cr_assert(isfinite(grad[i]));
}

Test(sparselr, layout_takes_two_classes_and_no_hidden_layers)
{
    gdml_layout l;
    gdml_errmsg e;
    cr_assert_eq(gdml_layout_parse("sparselr 1000000 2", &l, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(l.inputs, 1000000);
    cr_assert_eq(gdml_layout_parse("sparselr 100 3", &l, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "at most 2 classes"), "%s", e.text);
    cr_assert_eq(gdml_layout_parse("sparselr 100 8 2", &l, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "no hidden layers"), "%s", e.text);
}

Test(sparselr, keys_are_distinct_sorted_and_end_with_the_bias)
{
    gdml_layout l = sparse_layout(9);
    uint64_t marks[1] = {0};
    uint32_t keys[9];
    size_t n;
    gdml_model_keys(&l, rows(), 3, marks, keys, &n);
    const uint32_t want[] = {0, 1, 2, 4, 7, 8, 9};
    cr_assert_eq(n, 7);
    cr_assert_arr_eq(keys, want, sizeof want);
    cr_assert_eq(marks[0], 0, "the bitmap is left zeroed");
    /* A view of the last two rows. */
    gdml_csr tail = {.ptr = ptr + 1, .idx = idx, .val = val};
    gdml_model_keys(&l, tail, 2, marks, keys, &n);
    const uint32_t want_tail[] = {0, 1, 2, 4, 8, 9};
    cr_assert_eq(n, 6);
    cr_assert_arr_eq(keys, want_tail, sizeof want_tail);
}

/* A data set that owns copies of the three rows. */
static gdml_dataset sparse_set(void)
{
    gdml_dataset d = {.n = 3, .dim = 9, .classes = 2};
    d.ptr = malloc(sizeof ptr);
    d.idx = malloc(sizeof idx);
    d.val = malloc(sizeof val);
    d.y = malloc(sizeof y);
    cr_assert(d.ptr && d.idx && d.val && d.y);
    memcpy(d.ptr, ptr, sizeof ptr);
    memcpy(d.idx, idx, sizeof idx);
    memcpy(d.val, val, sizeof val);
    memcpy(d.y, y, sizeof y);
    return d;
}

Test(sparselr, evaluate_takes_sparse_rows_only_for_sparse_kinds)
{
    gdml_layout l = sparse_layout(9);
    gdml_dataset d = sparse_set();
    float params[10] = {0};
    params[4] = -1.0f;
    double acc, loss;
    cr_assert_eq(gdml_model_evaluate_set(&l, params, &d, &acc, &loss), GDML_OK);
    cr_assert_float_eq(acc, 2.0 / 3.0, 1e-12); /* predicts 1, 0, 0 against 1, 0, 1 */
    gdml_errmsg e;
    cr_assert_eq(gdml_dataset_densify(&d, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_model_evaluate_set(&l, params, &d, &acc, &loss), GDML_ERR_INVALID);
    gdml_layout soft;
    cr_assert_eq(gdml_layout_make("softmax", 9, "", 2, &soft, &e), GDML_OK);
    float sp[20] = {0};
    cr_assert_eq(gdml_model_evaluate_set(&soft, sp, &d, &acc, &loss), GDML_OK);
    cr_assert_float_eq(loss, log(2.0), 1e-6);
    gdml_dataset_fini(&d);
}

Test(sparselr, densify_and_sparsify_round_trip)
{
    gdml_dataset d = sparse_set();
    gdml_errmsg e;
    cr_assert_eq(gdml_dataset_densify(&d, &e), GDML_OK, "%s", e.text);
    cr_assert(!gdml_dataset_sparse(&d) && d.x);
    /* Row 2 holds features 8 (-1), 1 (2) and 0 (0.25), in that order. */
    cr_assert_eq(d.x[0 * 9 + 4], -2.0f);
    cr_assert_eq(d.x[2 * 9 + 0], 0.25f);
    cr_assert_eq(d.x[2 * 9 + 1], 2.0f);
    cr_assert_eq(d.x[1 * 9 + 3], 0.0f);
    cr_assert_eq(gdml_dataset_sparsify(&d, &e), GDML_OK, "%s", e.text);
    cr_assert(gdml_dataset_sparse(&d) && !d.x);
    cr_assert_eq(d.ptr[3], 8);
    /* Each row's entries, now in index order. */
    const uint32_t want_idx[] = {0, 4, 7, 2, 4, 0, 1, 8};
    const float want_val[] = {1.0f, -2.0f, 0.5f, 3.0f, 1.0f, 0.25f, 2.0f, -1.0f};
    cr_assert_arr_eq(d.idx, want_idx, sizeof want_idx);
    cr_assert_arr_eq(d.val, want_val, sizeof want_val);
    /* Both leave a set already held their way alone. */
    cr_assert_eq(gdml_dataset_sparsify(&d, &e), GDML_OK);
    cr_assert_eq(d.ptr[3], 8);
    gdml_dataset_fini(&d);
}

Test(sparselr, densify_refuses_what_cannot_be_held)
{
    gdml_dataset d = sparse_set();
    d.n = SIZE_MAX / 8; /* n x dim floats overflow: refused before any row is read */
    gdml_errmsg e;
    cr_assert_eq(gdml_dataset_densify(&d, &e), GDML_ERR_NOMEM);
    cr_assert(strstr(e.text, "sparselr"), "%s", e.text);
    d.n = 3;
    gdml_dataset_fini(&d);
}
