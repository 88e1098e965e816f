/*
 * sparselr.c - sparse binary logistic regression, the "sparselr" kind: the
 * click model of millions of features, trained on sparse rows.
 *
 * Parameters: w[inputs], then the bias b; for a row x (its entries idx, val)
 * the margin is z = b + sum_k w[idx_k] val_k and P(y = 1 | x) = sigmoid(z).
 * The loss is the mean log loss, log(1 + e^z) - y z per row, whose gradient
 * is (sigmoid(z) - y) x: non-zero only at the row's own features and the
 * bias. So a batch reads and writes only its keys (gdml_model_keys), which
 * is what lets workers pull and push just those.
 */
#include "model_impl.h"
#include "tensor.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>

static void check_layout(const gdml_layout *l)
{
    assert(l->inputs >= 1 && l->classes == 2);
    (void)l;
}

static size_t sparselr_param_count(const gdml_layout *l)
{
    check_layout(l);
    return (size_t)l->inputs + 1;
}

static size_t sparselr_scratch_count(const gdml_layout *l, size_t n)
{
    check_layout(l);
    (void)n;
    return 0;
}

/* Zeros: the loss is convex, and the zero model predicts 1/2 for every row. */
static void sparselr_init(const gdml_layout *l, float *params, uint64_t seed)
{
    (void)seed;
    gdml_szero(sparselr_param_count(l), params);
}

static double margin(const float *w, float b, gdml_csr rows, size_t i)
{
    double z = b;
    for (size_t k = rows.ptr[i]; k < rows.ptr[i + 1]; k++)
        z += (double)w[rows.idx[k]] * rows.val[k];
    return z;
}

/* log(1 + e^z), without overflow for large |z|. */
static double softplus(double z)
{
    return (z > 0 ? z : 0) + log1p(exp(-fabs(z)));
}

static double sparselr_loss_grad(const gdml_layout *l, const float *params, gdml_csr rows,
                                 const uint8_t *y, size_t n, float *grad)
{
    check_layout(l);
    const float *w = params;
    float b = params[l->inputs];
    if (grad) { /* the keys of the rows are overwritten, so clear them first */
        for (size_t k = rows.ptr[0]; k < rows.ptr[n]; k++)
            grad[rows.idx[k]] = 0.0f;
        grad[l->inputs] = 0.0f;
    }
    double loss = 0.0, db = 0.0;
    for (size_t i = 0; i < n; i++) {
        double z = margin(w, b, rows, i);
        loss += softplus(z) - (y[i] ? z : 0.0);
        if (!grad)
            continue;
        double g = (1.0 / (1.0 + exp(-z)) - (y[i] ? 1.0 : 0.0)) / (double)n;
        for (size_t k = rows.ptr[i]; k < rows.ptr[i + 1]; k++)
            grad[rows.idx[k]] += (float)(g * rows.val[k]);
        db += g;
    }
    if (grad)
        grad[l->inputs] = (float)db;
    return n ? loss / (double)n : 0.0;
}

static void sparselr_predict(const gdml_layout *l, const float *params, gdml_csr rows, size_t n,
                             uint8_t *pred)
{
    check_layout(l);
    for (size_t i = 0; i < n; i++)
        pred[i] = margin(params, params[l->inputs], rows, i) > 0.0;
}

const gdml_model_ops gdml_sparselr_ops = {
    .kind = "sparselr",
    .hidden = false,
    .max_classes = 2,
    .sparse = true,
    .param_count = sparselr_param_count,
    .scratch_count = sparselr_scratch_count,
    .init = sparselr_init,
    .loss_grad_csr = sparselr_loss_grad,
    .predict_csr = sparselr_predict,
};
