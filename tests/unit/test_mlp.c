/*
 * test_mlp.c - the "mlp" model kind: parameter count, He initialization,
 * the gradient against finite differences (through ReLUs and two hidden
 * layers), training on data no linear model separates, and evaluation.
 */
#include "model.h"
#include "rng.h"
#include "tensor.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gdml_layout mlp(const char *text)
{
    gdml_layout l;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_layout_parse(text, &l, &e), GDML_OK, "%s", e.text);
    return l;
}

static const gdml_model_ops *ops(void)
{
    const gdml_model_ops *o = gdml_model_find("mlp");
    cr_assert_not_null(o);
    return o;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    cr_assert_not_null(p);
    return p;
}

static void fill_normal(gdml_rng *r, float *a, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(scale * gdml_rng_normal(r));
}

Test(mlp, counts_every_layer_and_bias)
{
    gdml_layout l = mlp("mlp 784 256,128 10");
    cr_assert_eq(ops()->param_count(&l), 785 * 256 + 257 * 128 + 129 * 10);
    l = mlp("mlp 4 5 3");
    cr_assert_eq(ops()->param_count(&l), 5 * 5 + 6 * 3);
    /* Per row: each layer's output, plus the widest hidden layer. */
    cr_assert_eq(ops()->scratch_count(&l, 7), 7 * (5 + 3 + 5));
}

Test(mlp, he_init_is_deterministic_with_zero_biases)
{
    gdml_layout l = mlp("mlp 784 256,128 10");
    size_t np = ops()->param_count(&l);
    float *a = xcalloc(np, sizeof *a), *b = xcalloc(np, sizeof *b), *c = xcalloc(np, sizeof *c);
    ops()->init(&l, a, 42);
    ops()->init(&l, b, 42);
    ops()->init(&l, c, 43);
    cr_assert(memcmp(a, b, np * sizeof *a) == 0, "same seed, different models");
    cr_assert(memcmp(a, c, np * sizeof *a) != 0, "different seeds, same model");
    size_t d[] = {784, 256, 128, 10}, at = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t nw = d[k] * d[k + 1];
        double sd = gdml_snrm2(nw, a + at) / sqrt((double)nw), want = sqrt(2.0 / (double)d[k]);
        cr_assert(fabs(sd - want) < 0.1 * want, "layer %zu: standard deviation %g, He says %g", k,
                  sd, want);
        for (size_t j = 0; j < d[k + 1]; j++)
            cr_assert_eq(a[at + nw + j], 0.0f, "layer %zu bias %zu is not zero", k, j);
        at += nw + d[k + 1];
    }
    cr_assert_eq(at, np);
    free(a);
    free(b);
    free(c);
}

Test(mlp, gradient_matches_finite_differences)
{
    gdml_layout l = mlp("mlp 6 5,4 3");
    size_t n = 7, np = ops()->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 5);
    float *params = xcalloc(np, sizeof *params), *grad = xcalloc(np, sizeof *grad);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *scratch = xcalloc(ops()->scratch_count(&l, n), sizeof *scratch);
    uint8_t y[7];
    ops()->init(&l, params, 9);
    for (size_t i = 0; i < np; i++) /* biases too, so that no ReLU sits at its kink */
        params[i] += (float)(0.3 * gdml_rng_normal(&r));
    fill_normal(&r, x, n * l.inputs, 1.0);
    for (size_t i = 0; i < n; i++)
        y[i] = (uint8_t)gdml_rng_below(&r, l.classes);
    double loss = ops()->loss_grad(&l, params, x, y, n, grad, scratch);
    cr_assert(isfinite(loss) && loss > 0);
    cr_assert(fabs(ops()->loss_grad(&l, params, x, y, n, NULL, scratch) - loss) < 1e-9,
              "the loss depends on whether the gradient is asked for");
    size_t checked = 0;
    for (size_t i = 0; i < np; i++) {
        const float h = 1e-3f;
        float saved = params[i];
        params[i] = saved + h;
        double up = ops()->loss_grad(&l, params, x, y, n, NULL, scratch);
        params[i] = saved - h;
        double down = ops()->loss_grad(&l, params, x, y, n, NULL, scratch);
        params[i] = saved;
        double fd = (up - down) / ((double)(saved + h) - (double)(saved - h));
        cr_assert(fabs(grad[i] - fd) <= 2e-3 + 2e-2 * fabs(fd),
                  "param %zu of %zu: gradient %.6f, finite difference %.6f", i, np,
                  (double)grad[i], fd);
        checked += grad[i] != 0.0f;
    }
    cr_assert_gt(checked, np / 2, "most of the gradient is zero: the check proves little");
    free(params);
    free(grad);
    free(x);
    free(scratch);
}

Test(mlp, empty_batch_has_zero_loss_and_gradient)
{
    gdml_layout l = mlp("mlp 2 3 2");
    size_t np = ops()->param_count(&l);
    float *grad = xcalloc(np, sizeof *grad), *params = xcalloc(np, sizeof *params);
    for (size_t i = 0; i < np; i++)
        grad[i] = 1;
    float scratch[1];
    cr_assert_eq(ops()->loss_grad(&l, params, NULL, NULL, 0, grad, scratch), 0.0);
    for (size_t i = 0; i < np; i++)
        cr_assert_eq(grad[i], 0.0f);
    free(grad);
    free(params);
}

Test(mlp, learns_xor_which_no_linear_model_can)
{
    /* Four clusters: the label is the XOR of the signs of the two inputs. */
    gdml_layout l = mlp("mlp 2 16,16 2");
    size_t n = 200, np = ops()->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 3);
    float *params = xcalloc(np, sizeof *params), *grad = xcalloc(np, sizeof *grad);
    float *x = xcalloc(n * 2, sizeof *x);
    float *scratch = xcalloc(ops()->scratch_count(&l, n), sizeof *scratch);
    uint8_t *y = xcalloc(n, 1);
    for (size_t i = 0; i < n; i++) {
        float a = i % 2 ? 1.0f : -1.0f, b = i % 4 < 2 ? 1.0f : -1.0f;
        x[2 * i] = a + (float)(0.2 * gdml_rng_normal(&r));
        x[2 * i + 1] = b + (float)(0.2 * gdml_rng_normal(&r));
        y[i] = (uint8_t)((a > 0) != (b > 0));
    }
    ops()->init(&l, params, 1);
    double acc, first, loss;
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, n, &acc, &first), GDML_OK);
    for (int step = 0; step < 500; step++) {
        ops()->loss_grad(&l, params, x, y, n, grad, scratch);
        gdml_saxpy(np, -0.2f, grad, params);
    }
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, n, &acc, &loss), GDML_OK);
    cr_assert_eq(acc, 1.0, "accuracy %g on XOR after training", acc);
    cr_assert(loss < 0.1 && loss < first, "loss went from %g to %g", first, loss);
    free(params);
    free(grad);
    free(x);
    free(scratch);
    free(y);
}

Test(mlp, predict_agrees_with_evaluate_in_chunks)
{
    gdml_layout l = mlp("mlp 8 6 4");
    size_t n = 2500, np = ops()->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 8);
    float *params = xcalloc(np, sizeof *params), *x = xcalloc(n * 8, sizeof *x);
    float *scratch = xcalloc(ops()->scratch_count(&l, n), sizeof *scratch);
    uint8_t *pred = xcalloc(n, 1);
    ops()->init(&l, params, 2);
    fill_normal(&r, x, n * 8, 1.0);
    ops()->predict(&l, params, x, n, pred, scratch); /* the labels: accuracy must be 1 */
    double acc, loss;
    cr_assert_eq(gdml_model_evaluate(&l, params, x, pred, n, &acc, &loss), GDML_OK);
    cr_assert_eq(acc, 1.0, "evaluate in chunks of 1024 disagrees with one predict: %g", acc);
    gdml_layout bad = l;
    bad.n_hidden = 0;
    cr_assert_eq(gdml_model_evaluate(&bad, params, x, pred, n, &acc, &loss), GDML_ERR_INVALID);
    free(params);
    free(x);
    free(scratch);
    free(pred);
}
