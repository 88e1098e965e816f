/*
 * softmax.c - softmax (multinomial logistic) regression, the "softmax" kind.
 *
 * Parameters: W (inputs x classes, row-major), then b (classes); for a batch
 * X (n x inputs) the logits are Z = X W + b. The batch math runs through
 * gdml_sgemm; the per-row softmax is a loop. Scratch holds the n x classes
 * logits, which loss_grad turns into dZ in place.
 */
#include "model_impl.h"
#include "rng.h"
#include "tensor.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>

/* Standard deviation of the initial weights. */
#define SOFTMAX_INIT_STDDEV 0.01

static void check_layout(const gdml_layout *l)
{
    assert(l->inputs >= 1);
    assert(l->classes >= 2);
    (void)l;
}

static size_t softmax_param_count(const gdml_layout *l)
{
    check_layout(l);
    return ((size_t)l->inputs + 1) * l->classes;
}

static size_t softmax_scratch_count(const gdml_layout *l, size_t n)
{
    check_layout(l);
    assert(n <= SIZE_MAX / l->classes);
    return n * l->classes;
}

/*
 * W ~ N(0, 0.01^2) from a generator seeded with seed, so that every process
 * starting from the same seed holds the same model. b starts at zero: the
 * random W already breaks the symmetry between classes, and a zero bias
 * favours no class before any data has been seen.
 */
static void softmax_init(const gdml_layout *l, float *params, uint64_t seed)
{
    check_layout(l);
    size_t nw = (size_t)l->inputs * l->classes;
    gdml_rng rng;
    gdml_rng_seed(&rng, seed);
    for (size_t i = 0; i < nw; i++)
        params[i] = (float)(SOFTMAX_INIT_STDDEV * gdml_rng_normal(&rng));
    gdml_szero(l->classes, params + nw);
}

/* z[0..n x classes) = x W + b. */
static void logits(const gdml_layout *l, const float *params, const float *x, size_t n, float *z)
{
    size_t inputs = l->inputs, classes = l->classes;
    const float *w = params;
    const float *b = params + inputs * classes;
    gdml_sgemm(false, false, n, classes, inputs, 1.0f, x, inputs, w, classes, 0.0f, z, classes);
    for (size_t i = 0; i < n; i++) {
        float *zi = z + i * classes;
        for (size_t j = 0; j < classes; j++)
            zi[j] += b[j];
    }
}

double gdml_softmax_xent(float *z, const uint8_t *y, size_t n, size_t classes, bool grad)
{
    /*
     * Per row, with m = max_j z_j and s = sum_j exp(z_j - m):
     *   -log p_y = log(s) - (z_y - m),  p_j = exp(z_j - m) / s.
     * Subtracting m keeps exp from overflowing, and since s >= 1 the loss is
     * finite and exact even where p_y itself would round to zero, so no
     * clamping of log(p) is needed.
     */
    double loss = 0.0;
    for (size_t i = 0; i < n; i++) {
        float *zi = z + i * classes;
        /* Labels are validated when a dataset is loaded; a bad one here is a bug. */
        assert(y[i] < classes);
        float m = zi[0];
        for (size_t j = 1; j < classes; j++)
            m = zi[j] > m ? zi[j] : m;
        double zy = (double)zi[y[i]] - m;
        double s = 0.0;
        for (size_t j = 0; j < classes; j++) {
            zi[j] = expf(zi[j] - m);
            s += zi[j];
        }
        loss += log(s) - zy;
        if (grad) {
            /* dZ = (P - onehot(y)) / n, written over the row. */
            float scale = (float)(1.0 / (s * (double)n));
            for (size_t j = 0; j < classes; j++)
                zi[j] *= scale;
            zi[y[i]] -= (float)(1.0 / (double)n);
        }
    }
    return loss / (double)n;
}

void gdml_argmax_rows(const float *z, size_t n, size_t classes, uint8_t *pred)
{
    for (size_t i = 0; i < n; i++) {
        const float *zi = z + i * classes;
        size_t best = 0;
        for (size_t j = 1; j < classes; j++)
            if (zi[j] > zi[best])
                best = j;
        pred[i] = (uint8_t)best;
    }
}

static double softmax_loss_grad(const gdml_layout *l, const float *params, const float *x,
                                const uint8_t *y, size_t n, float *grad, float *scratch)
{
    check_layout(l);
    size_t inputs = l->inputs, classes = l->classes;
    size_t nw = inputs * classes;
    if (n == 0) {
        if (grad)
            gdml_szero(nw + classes, grad);
        return 0.0;
    }

    float *z = scratch;
    logits(l, params, x, n, z);
    double loss = gdml_softmax_xent(z, y, n, classes, grad != NULL);
    if (!grad)
        return loss;

    /* dW = X^T dZ (inputs x classes); db = column sums of dZ. */
    gdml_sgemm(true, false, inputs, classes, n, 1.0f, x, inputs, z, classes, 0.0f, grad, classes);
    float *db = grad + nw;
    gdml_szero(classes, db);
    for (size_t i = 0; i < n; i++) {
        const float *dzi = z + i * classes;
        for (size_t j = 0; j < classes; j++)
            db[j] += dzi[j];
    }
    return loss;
}

static void softmax_predict(const gdml_layout *l, const float *params, const float *x, size_t n,
                            uint8_t *pred, float *scratch)
{
    check_layout(l);
    /* Predictions are uint8_t; gdml_layout_parse never admits more classes. */
    assert(l->classes <= (uint32_t)UINT8_MAX + 1);
    float *z = scratch;
    logits(l, params, x, n, z);
    gdml_argmax_rows(z, n, l->classes, pred);
}

const gdml_model_ops gdml_softmax_ops = {
    .kind = "softmax",
    .hidden = false,
    .param_count = softmax_param_count,
    .scratch_count = softmax_scratch_count,
    .init = softmax_init,
    .loss_grad = softmax_loss_grad,
    .predict = softmax_predict,
};
