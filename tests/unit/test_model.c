/*
 * test_model.c - model kinds, layouts, softmax regression (gradient against
 * finite differences, prediction, initialisation, training) and evaluation.
 */
#include "model.h"
#include "rng.h"
#include "tensor.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gdml_layout layout(uint32_t inputs, uint32_t classes)
{
    gdml_layout l;
    memset(&l, 0, sizeof l);
    strcpy(l.kind, "softmax");
    l.inputs = inputs;
    l.classes = classes;
    return l;
}

static const gdml_model_ops *softmax(void)
{
    const gdml_model_ops *ops = gdml_model_find("softmax");
    cr_assert_not_null(ops);
    return ops;
}

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size);
    cr_assert_not_null(p);
    return p;
}

static void fill_normal(gdml_rng *r, float *a, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)(scale * gdml_rng_normal(r));
}

static void fill_labels(gdml_rng *r, uint8_t *y, size_t n, uint32_t classes)
{
    for (size_t i = 0; i < n; i++)
        y[i] = (uint8_t)gdml_rng_below(r, classes);
}

/* Mean cross-entropy of softmax regression, computed independently in double. */
static double ref_loss(const gdml_layout *l, const double *params, const float *x, const uint8_t *y,
                       size_t n)
{
    size_t in = l->inputs, k = l->classes;
    double *z = xcalloc(k, sizeof *z);
    double total = 0.0;
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; j < k; j++) {
            z[j] = params[in * k + j];
            for (size_t p = 0; p < in; p++)
                z[j] += (double)x[i * in + p] * params[p * k + j];
        }
        double m = z[0];
        for (size_t j = 1; j < k; j++)
            m = fmax(m, z[j]);
        double s = 0.0;
        for (size_t j = 0; j < k; j++)
            s += exp(z[j] - m);
        total += log(s) - (z[y[i]] - m);
    }
    free(z);
    return total / (double)n;
}

/* ---- kinds and layouts ---- */

Test(model, find_kinds)
{
    const gdml_model_ops *ops = gdml_model_find("softmax");
    cr_assert_not_null(ops);
    cr_assert_str_eq(ops->kind, "softmax");
    cr_assert_not_null(gdml_model_find("mlp"));
    cr_assert_null(gdml_model_find("Mlp"));
    cr_assert_null(gdml_model_find(""));
    cr_assert_null(gdml_model_find("Softmax"));
}

Test(model, counts)
{
    gdml_layout l = layout(784, 10);
    cr_assert_eq(softmax()->param_count(&l), 7850);
    cr_assert_eq(softmax()->scratch_count(&l, 32), 320);
    cr_assert_eq(softmax()->scratch_count(&l, 0), 0);
}

Test(model, layout_parse_good)
{
    struct {
        const char *text;
        uint32_t inputs, classes;
    } cases[] = {
        {"softmax 784 10", 784, 10},   {"  softmax\t7   4 \n", 7, 4},
        {"softmax 1 2", 1, 2},         {"softmax 100000000 256", 100000000, 256},
        {"softmax 0784 010", 784, 10}, {"mlp 784 256,128 10", 784, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gdml_layout l;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_layout_parse(cases[i].text, &l, &e);
        cr_assert_eq(err, GDML_OK, "'%s': %s", cases[i].text, e.text);
        cr_assert_str_eq(l.kind, strstr(cases[i].text, "mlp") ? "mlp" : "softmax");
        cr_assert_eq(l.inputs, cases[i].inputs, "'%s'", cases[i].text);
        cr_assert_eq(l.classes, cases[i].classes, "'%s'", cases[i].text);
    }
}

Test(model, layout_parse_bad)
{
    struct {
        const char *text;
        const char *says;
    } cases[] = {
        {"softmax 784", "layout 'softmax 784': expected '<kind> <inputs> <classes>'"},
        {"", "expected '<kind> <inputs> <classes>'"},
        {"   ", "expected '<kind> <inputs> <classes>'"},
        {"softmax", "expected '<kind> <inputs> <classes>'"},
        {"softmax 784 10 3 4", "expected '<kind> <inputs> <classes>'"},
        {"softmax 784 10 3", "a 'softmax' model has no hidden layers"},
        {"mlp 784 10", "a 'mlp' model names its hidden layers, e.g. 'mlp 784 256,128 10'"},
        {"mlp 784 0,5 10", "each hidden width must be a whole number from 1 to 65536, got '0'"},
        {"mlp 784 256,,128 10", "got ''"},
        {"mlp 784 256, 10", "got ''"},
        {"mlp 784 65537 10", "got '65537'"},
        {"mlp 784 1,2,3,4,5,6,7,8,9 10", "at most 8 hidden layers"},
        {"mlp 784 256 1", "classes must be"},
        {"nn 784 10", "unknown model kind 'nn' (known: softmax, mlp, sparselr)"},
        {"averyveryverylongkind 784 10", "unknown model kind 'averyveryverylongkind'"},
        {"softmax 0 10", "inputs must be a whole number from 1 to 100000000, got '0'"},
        {"softmax 100000001 10", "inputs must be a whole number from 1 to 100000000"},
        {"softmax 99999999999999999999999 10", "inputs must be"},
        {"softmax -1 10", "got '-1'"},
        {"softmax +5 10", "got '+5'"},
        {"softmax 7x 10", "got '7x'"},
        {"softmax 784 1", "classes must be a whole number from 2 to 256"},
        {"softmax 784 0", "classes must be"},
        {"softmax 784 257", "got '257'"},
        {"softmax 784 1e1", "got '1e1'"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        gdml_layout l = layout(3, 3);
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_layout_parse(cases[i].text, &l, &e);
        cr_assert_eq(err, GDML_ERR_FORMAT, "'%s' was accepted", cases[i].text);
        cr_assert(strstr(e.text, cases[i].says), "'%s': message '%s' lacks '%s'", cases[i].text,
                  e.text, cases[i].says);
        cr_assert(l.inputs == 3 && l.classes == 3, "'%s' changed the output", cases[i].text);
    }
    gdml_layout l;
    cr_assert_eq(gdml_layout_parse("softmax 1", &l, NULL), GDML_ERR_FORMAT);
}

Test(model, layout_format_round_trip)
{
    gdml_layout l = layout(784, 10);
    char buf[64];
    gdml_layout_format(&l, buf, sizeof buf);
    cr_assert_str_eq(buf, "softmax 784 10");
    gdml_layout back;
    cr_assert_eq(gdml_layout_parse(buf, &back, NULL), GDML_OK);
    cr_assert(memcmp(&l, &back, sizeof l) == 0);

    char tiny[8];
    gdml_layout_format(&l, tiny, sizeof tiny);
    cr_assert_str_eq(tiny, "softmax");

    cr_assert_eq(gdml_layout_parse("mlp 784 256,128 10", &l, NULL), GDML_OK);
    cr_assert_eq(l.n_hidden, 2);
    cr_assert(l.hidden[0] == 256 && l.hidden[1] == 128);
    gdml_layout_format(&l, buf, sizeof buf);
    cr_assert_str_eq(buf, "mlp 784 256,128 10");
    gdml_errmsg e;
    cr_assert_eq(gdml_layout_make("mlp", 784, "256,128", 10, &back, &e), GDML_OK, "%s", e.text);
    cr_assert(memcmp(&l, &back, sizeof l) == 0);
    cr_assert_eq(gdml_layout_make("softmax", 784, "", 10, &back, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_layout_make("mlp", 784, "", 10, &back, &e), GDML_ERR_FORMAT);
    cr_assert(strstr(e.text, "names its hidden layers"), "%s", e.text);
}

/* ---- softmax regression ---- */

Test(model, init_is_deterministic)
{
    gdml_layout l = layout(784, 10);
    size_t np = softmax()->param_count(&l);
    float *a = xcalloc(np, sizeof *a), *b = xcalloc(np, sizeof *b), *c = xcalloc(np, sizeof *c);
    softmax()->init(&l, a, 42);
    softmax()->init(&l, b, 42);
    softmax()->init(&l, c, 43);
    cr_assert(memcmp(a, b, np * sizeof *a) == 0, "same seed, different models");
    cr_assert(memcmp(a, c, np * sizeof *a) != 0, "different seeds, same model");

    size_t nw = 784 * 10;
    for (size_t j = 0; j < 10; j++)
        cr_assert_eq(a[nw + j], 0.0f, "bias %zu is not zero", j);
    double sd = gdml_snrm2(nw, a) / sqrt((double)nw);
    cr_assert(sd > 0.009 && sd < 0.011, "weights have standard deviation %g, want 0.01", sd);
    free(a);
    free(b);
    free(c);
}

Test(model, zero_params_loss_is_log_classes)
{
    gdml_layout l = layout(7, 4);
    size_t n = 5, np = softmax()->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 3);
    float *params = xcalloc(np, sizeof *params);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *grad = xcalloc(np, sizeof *grad);
    float *scratch = xcalloc(softmax()->scratch_count(&l, n), sizeof *scratch);
    uint8_t y[5];
    fill_normal(&r, x, n * l.inputs, 1.0);
    fill_labels(&r, y, n, l.classes);
    double loss = softmax()->loss_grad(&l, params, x, y, n, grad, scratch);
    cr_assert(fabs(loss - log(4.0)) < 1e-6, "loss %.9f, want log 4 = %.9f", loss, log(4.0));
    loss = softmax()->loss_grad(&l, params, x, y, n, NULL, scratch);
    cr_assert(fabs(loss - log(4.0)) < 1e-6);
    free(params);
    free(x);
    free(grad);
    free(scratch);
}

Test(model, gradient_matches_finite_differences)
{
    gdml_layout l = layout(7, 4);
    const gdml_model_ops *ops = softmax();
    size_t n = 5, np = ops->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 11);
    float *params = xcalloc(np, sizeof *params);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *grad = xcalloc(np, sizeof *grad);
    float *scratch = xcalloc(ops->scratch_count(&l, n), sizeof *scratch);
    double *dparams = xcalloc(np, sizeof *dparams);
    uint8_t y[5];
    /* Large enough weights that the probabilities are far from uniform. */
    fill_normal(&r, params, np, 0.7);
    fill_normal(&r, x, n * l.inputs, 1.0);
    fill_labels(&r, y, n, l.classes);
    for (size_t i = 0; i < np; i++)
        dparams[i] = params[i];

    double loss = ops->loss_grad(&l, params, x, y, n, grad, scratch);
    double ref = ref_loss(&l, dparams, x, y, n);
    cr_assert(fabs(loss - ref) <= 1e-5 * (1.0 + ref), "loss %.9f, reference %.9f", loss, ref);

    for (size_t i = 0; i < np; i++) {
        /* Central difference of the model's own float loss. */
        const float h = 1e-2f;
        float saved = params[i];
        params[i] = saved + h;
        double up = ops->loss_grad(&l, params, x, y, n, NULL, scratch);
        params[i] = saved - h;
        double down = ops->loss_grad(&l, params, x, y, n, NULL, scratch);
        params[i] = saved;
        double fd = (up - down) / ((double)(saved + h) - (double)(saved - h));
        cr_assert(fabs(grad[i] - fd) <= 1e-3 + 1e-2 * fabs(fd),
                  "param %zu: gradient %.7f, finite difference (float) %.7f", i, (double)grad[i],
                  fd);

        /* Central difference of the double reference: a tighter check. */
        const double hd = 1e-5;
        dparams[i] = saved + hd;
        double dup = ref_loss(&l, dparams, x, y, n);
        dparams[i] = saved - hd;
        double ddown = ref_loss(&l, dparams, x, y, n);
        dparams[i] = saved;
        double dfd = (dup - ddown) / (2 * hd);
        cr_assert(fabs(grad[i] - dfd) <= 1e-5 + 1e-4 * fabs(dfd),
                  "param %zu: gradient %.9f, finite difference (double) %.9f", i, (double)grad[i],
                  dfd);
    }
    free(params);
    free(x);
    free(grad);
    free(scratch);
    free(dparams);
}

Test(model, loss_is_stable_for_huge_logits)
{
    gdml_layout l = layout(2, 3);
    float params[9] = {1000, -1000, 0, 0, 500, -500, 0, 0, 0};
    float x[4] = {1, 0, 0, 1};
    uint8_t y[2] = {1, 2}; /* both rows labelled with a class of p ~ exp(-1000) */
    float grad[9], scratch[6];
    double dparams[9];
    for (int i = 0; i < 9; i++)
        dparams[i] = params[i];
    double loss = softmax()->loss_grad(&l, params, x, y, 2, grad, scratch);
    double ref = ref_loss(&l, dparams, x, y, 2);
    cr_assert(isfinite(loss) && fabs(loss - ref) < 1e-6 * ref, "loss %g, want %g", loss, ref);
    for (int i = 0; i < 9; i++)
        cr_assert(isfinite(grad[i]));
}

Test(model, empty_batch)
{
    gdml_layout l = layout(2, 3);
    float params[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    float grad[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
    float scratch[1];
    cr_assert_eq(softmax()->loss_grad(&l, params, NULL, NULL, 0, grad, scratch), 0.0);
    for (int i = 0; i < 9; i++)
        cr_assert_eq(grad[i], 0.0f);
}

Test(model, predict_is_argmax_of_logits)
{
    gdml_layout l = layout(6, 5);
    const gdml_model_ops *ops = softmax();
    size_t n = 50, np = ops->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 5);
    float *params = xcalloc(np, sizeof *params);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *scratch = xcalloc(ops->scratch_count(&l, n), sizeof *scratch);
    uint8_t pred[50];
    fill_normal(&r, params, np, 1.0);
    fill_normal(&r, x, n * l.inputs, 1.0);
    ops->predict(&l, params, x, n, pred, scratch);
    for (size_t i = 0; i < n; i++) {
        size_t best = 0;
        double best_z = -INFINITY;
        for (size_t j = 0; j < l.classes; j++) {
            double z = params[l.inputs * l.classes + j];
            for (size_t p = 0; p < l.inputs; p++)
                z += (double)x[i * l.inputs + p] * params[p * l.classes + j];
            if (z > best_z) {
                best_z = z;
                best = j;
            }
        }
        cr_assert_eq(pred[i], best, "row %zu: predicted %d, argmax %zu", i, pred[i], best);
    }
    free(params);
    free(x);
    free(scratch);
}

/* ---- training and evaluation ---- */

Test(model, sgd_learns_separable_data)
{
    /* Three well-separated clusters, one per class, plus a noise input. */
    gdml_layout l = layout(4, 3);
    const gdml_model_ops *ops = softmax();
    size_t n = 60, np = ops->param_count(&l);
    gdml_rng r;
    gdml_rng_seed(&r, 21);
    float *params = xcalloc(np, sizeof *params);
    float *grad = xcalloc(np, sizeof *grad);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *scratch = xcalloc(ops->scratch_count(&l, n), sizeof *scratch);
    uint8_t y[60];
    for (size_t i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % 3);
        fill_normal(&r, x + i * l.inputs, l.inputs, 0.3);
        x[i * l.inputs + y[i]] += 3.0f;
    }
    ops->init(&l, params, 7);

    double acc, first, loss;
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, n, &acc, &first), GDML_OK);
    for (int step = 0; step < 300; step++) {
        ops->loss_grad(&l, params, x, y, n, grad, scratch);
        gdml_saxpy(np, -0.5f, grad, params);
    }
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, n, &acc, &loss), GDML_OK);
    cr_assert_eq(acc, 1.0, "accuracy %g after training", acc);
    cr_assert(loss < 0.05 && loss < first, "loss went from %g to %g", first, loss);
    free(params);
    free(grad);
    free(x);
    free(scratch);
}

Test(model, evaluate_in_chunks_matches_one_pass)
{
    gdml_layout l = layout(6, 5);
    const gdml_model_ops *ops = softmax();
    size_t n = 2500, np = ops->param_count(&l); /* chunks of 1024, 1024, 452 */
    gdml_rng r;
    gdml_rng_seed(&r, 99);
    float *params = xcalloc(np, sizeof *params);
    float *x = xcalloc(n * l.inputs, sizeof *x);
    float *scratch = xcalloc(ops->scratch_count(&l, n), sizeof *scratch);
    uint8_t *y = xcalloc(n, 1), *pred = xcalloc(n, 1);
    fill_normal(&r, params, np, 1.0);
    fill_normal(&r, x, n * l.inputs, 1.0);
    fill_labels(&r, y, n, l.classes);
    /* Make some rows predictable so that accuracy is neither 0 nor 1. */
    ops->predict(&l, params, x, n, pred, scratch);
    for (size_t i = 0; i < n; i += 2)
        y[i] = pred[i];

    double acc, loss;
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, n, &acc, &loss), GDML_OK);

    /* One pass over all rows. */
    double one_loss = ops->loss_grad(&l, params, x, y, n, NULL, scratch);
    ops->predict(&l, params, x, n, pred, scratch);
    size_t correct = 0;
    for (size_t i = 0; i < n; i++)
        correct += pred[i] == y[i];
    cr_assert_eq(acc, (double)correct / (double)n, "accuracy %g, one pass %g", acc,
                 (double)correct / (double)n);
    cr_assert(acc > 0.5 && acc < 1.0);
    cr_assert(fabs(loss - one_loss) <= 1e-6 * one_loss, "loss %.9f, one pass %.9f", loss, one_loss);

    /* Chunks of 7 rows, and the double reference. */
    double sum = 0.0;
    for (size_t start = 0; start < n; start += 7) {
        size_t rows = n - start < 7 ? n - start : 7;
        sum += ops->loss_grad(&l, params, x + start * l.inputs, y + start, rows, NULL, scratch) *
               (double)rows;
    }
    cr_assert(fabs(loss - sum / (double)n) <= 1e-6 * loss);
    double *dparams = xcalloc(np, sizeof *dparams);
    for (size_t i = 0; i < np; i++)
        dparams[i] = params[i];
    double ref = ref_loss(&l, dparams, x, y, n);
    cr_assert(fabs(loss - ref) <= 1e-5 * ref, "loss %.9f, reference %.9f", loss, ref);
    free(dparams);
    free(params);
    free(x);
    free(scratch);
    free(y);
    free(pred);
}

Test(model, evaluate_rejects_unknown_kind_and_no_rows)
{
    gdml_layout l = layout(2, 2);
    float params[6] = {0};
    float x[2] = {1, 2};
    uint8_t y[1] = {0};
    double acc = -1, loss = -1;
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, 0, &acc, &loss), GDML_ERR_INVALID);
    strcpy(l.kind, "mlp");
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, 1, &acc, &loss), GDML_ERR_INVALID);
    memset(l.kind, 'x', sizeof l.kind); /* not NUL-terminated */
    cr_assert_eq(gdml_model_evaluate(&l, params, x, y, 1, &acc, &loss), GDML_ERR_INVALID);
    cr_assert(acc == -1 && loss == -1, "outputs set on failure");
}

Test(model, layout_check_data_names_what_does_not_fit)
{
    gdml_layout l = {.kind = "softmax", .inputs = 784, .classes = 10};
    gdml_errmsg e;
    cr_assert_eq(gdml_layout_check_data(&l, 784, 10, "t10k", &e), GDML_OK);
    cr_assert_eq(gdml_layout_check_data(&l, 784, 3, "t10k", &e), GDML_OK, "fewer classes fit");
    cr_assert_eq(gdml_layout_check_data(&l, 100, 10, "t10k", &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "'t10k' has 100 inputs") && strstr(e.text, "softmax 784 10"), "%s",
              e.text);
    cr_assert_eq(gdml_layout_check_data(&l, 784, 11, "t10k", &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "11 classes"), "%s", e.text);
}
