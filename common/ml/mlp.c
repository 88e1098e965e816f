/*
 * mlp.c - the multilayer perceptron, the "mlp" kind: hidden layers with
 * ReLU, then a softmax over the classes, trained on cross-entropy.
 *
 * Layer k maps d_k to d_{k+1} features (d_0 = inputs, d_L = classes, the
 * hidden widths between); its parameters are W_k (d_k x d_{k+1}, row-major)
 * then b_k, layer after layer from the inputs. For a batch X (n x inputs):
 *   A_0 = X,  Z_k = A_{k-1} W_k + b_k,  A_k = relu(Z_k) (the last: logits).
 * Every product runs through gdml_sgemm. Scratch holds each layer's output
 * (n x d_k for k = 1..L) and one n x (widest hidden) buffer for the backward
 * pass, which walks down the layers turning each output into its gradient
 * in place: a hidden output is needed only for its ReLU mask and for the
 * gradient of the layer above, and both are taken before it is overwritten.
 */
#include "model_impl.h"
#include "rng.h"
#include "tensor.h"

#include <assert.h>
#include <math.h>
#include <stdint.h>

/* The widths d_0..d_L of l; returns L, the number of layers. */
static size_t widths(const gdml_layout *l, size_t d[GDML_MAX_HIDDEN + 2])
{
    assert(l->n_hidden >= 1 && l->n_hidden <= GDML_MAX_HIDDEN);
    d[0] = l->inputs;
    for (uint32_t i = 0; i < l->n_hidden; i++)
        d[i + 1] = l->hidden[i];
    d[l->n_hidden + 1] = l->classes;
    return l->n_hidden + 1;
}

static size_t mlp_param_count(const gdml_layout *l)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d), n = 0;
    for (size_t k = 0; k < layers; k++)
        n += (d[k] + 1) * d[k + 1];
    return n;
}

static size_t widest_hidden(const size_t *d, size_t layers)
{
    size_t w = 0;
    for (size_t k = 1; k < layers; k++)
        w = d[k] > w ? d[k] : w;
    return w;
}

static size_t mlp_scratch_count(const gdml_layout *l, size_t n)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d), per_row = 0;
    for (size_t k = 1; k <= layers; k++)
        per_row += d[k];
    per_row += widest_hidden(d, layers);
    assert(n <= SIZE_MAX / per_row);
    return n * per_row;
}

/*
 * He initialization: W_k ~ N(0, 2 / d_k), which keeps the variance of the
 * activations the same from layer to layer under ReLU; b = 0. One generator
 * seeded with seed, layer after layer, so every process starting from the
 * same seed holds the same model.
 */
static void mlp_init(const gdml_layout *l, float *params, uint64_t seed)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d);
    gdml_rng rng;
    gdml_rng_seed(&rng, seed);
    float *p = params;
    for (size_t k = 0; k < layers; k++) {
        double sd = sqrt(2.0 / (double)d[k]);
        size_t nw = d[k] * d[k + 1];
        for (size_t i = 0; i < nw; i++)
            p[i] = (float)(sd * gdml_rng_normal(&rng));
        gdml_szero(d[k + 1], p + nw);
        p += nw + d[k + 1];
    }
}

/*
 * z[i][j] += b[j] over n rows of m, then the ReLU if relu. Branch-free inner
 * loops over restrict pointers, so that they vectorize: with small batches
 * these passes are a fifth of a step next to the GEMMs.
 */
static void add_bias(float *restrict z, const float *restrict b, size_t n, size_t m, bool relu)
{
    for (size_t i = 0; i < n; i++) {
        float *restrict row = z + i * m;
        if (relu)
            for (size_t j = 0; j < m; j++) {
                float v = row[j] + b[j];
                row[j] = v > 0.0f ? v : 0.0f;
            }
        else
            for (size_t j = 0; j < m; j++)
                row[j] += b[j];
    }
}

/* gb[j] = the sum over n rows of dz[i][j]. */
static void column_sums(const float *restrict dz, size_t n, size_t m, float *restrict gb)
{
    for (size_t j = 0; j < m; j++)
        gb[j] = 0.0f;
    for (size_t i = 0; i < n; i++) {
        const float *restrict row = dz + i * m;
        for (size_t j = 0; j < m; j++)
            gb[j] += row[j];
    }
}

/* Back through the ReLU: a[i] = back[i] where a[i] (its output) was positive, else 0. */
static void relu_backward(float *restrict a, const float *restrict back, size_t count)
{
    for (size_t i = 0; i < count; i++)
        a[i] = a[i] > 0.0f ? back[i] : 0.0f;
}

/* The forward pass: a[k] = layer k+1's output (n x d[k+1]); returns the logits. */
static float *forward(const size_t *d, size_t layers, const float *params, const float *x,
                      size_t n, float *scratch, float **a)
{
    const float *in = x, *p = params;
    float *out = scratch;
    for (size_t k = 0; k < layers; k++) {
        size_t fan_in = d[k], fan_out = d[k + 1];
        const float *w = p, *b = p + fan_in * fan_out;
        gdml_sgemm(false, false, n, fan_out, fan_in, 1.0f, in, fan_in, w, fan_out, 0.0f, out,
                   fan_out);
        add_bias(out, b, n, fan_out, k + 1 < layers);
        a[k] = out;
        in = out;
        out += n * fan_out;
        p = b + fan_out;
    }
    return a[layers - 1];
}

static double mlp_loss_grad(const gdml_layout *l, const float *params, const float *x,
                            const uint8_t *y, size_t n, float *grad, float *scratch)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d);
    if (n == 0) {
        if (grad)
            gdml_szero(mlp_param_count(l), grad);
        return 0.0;
    }
    float *a[GDML_MAX_HIDDEN + 1];
    float *z = forward(d, layers, params, x, n, scratch, a);
    double loss = gdml_softmax_xent(z, y, n, l->classes, grad != NULL);
    if (!grad)
        return loss;

    /* Offsets of each layer's W in params (and grad). */
    size_t off[GDML_MAX_HIDDEN + 1], at = 0;
    for (size_t k = 0; k < layers; k++) {
        off[k] = at;
        at += (d[k] + 1) * d[k + 1];
    }
    float *back = a[layers - 1] + n * d[layers]; /* n x widest hidden */
    /* a[k] holds dL/dZ of layer k+1 from here on, walking down. */
    for (size_t k = layers; k-- > 0;) {
        size_t fan_in = d[k], fan_out = d[k + 1];
        const float *dz = a[k], *in = k ? a[k - 1] : x;
        float *gw = grad + off[k], *gb = gw + fan_in * fan_out;
        /* dW = A_{k-1}^T dZ; db = column sums of dZ. */
        gdml_sgemm(true, false, fan_in, fan_out, n, 1.0f, in, fan_in, dz, fan_out, 0.0f, gw,
                   fan_out);
        column_sums(dz, n, fan_out, gb);
        if (k == 0)
            break;
        /* dA_{k-1} = dZ W^T, then through the ReLU: where A_{k-1} was 0, so is dZ. */
        gdml_sgemm(false, true, n, fan_in, fan_out, 1.0f, dz, fan_out, params + off[k], fan_out,
                   0.0f, back, fan_in);
        relu_backward(a[k - 1], back, n * fan_in);
    }
    return loss;
}

static void mlp_predict(const gdml_layout *l, const float *params, const float *x, size_t n,
                        uint8_t *pred, float *scratch)
{
    size_t d[GDML_MAX_HIDDEN + 2], layers = widths(l, d);
    float *a[GDML_MAX_HIDDEN + 1];
    gdml_argmax_rows(forward(d, layers, params, x, n, scratch, a), n, l->classes, pred);
}

const gdml_model_ops gdml_mlp_ops = {
    .kind = "mlp",
    .hidden = true,
    .param_count = mlp_param_count,
    .scratch_count = mlp_scratch_count,
    .init = mlp_init,
    .loss_grad = mlp_loss_grad,
    .predict = mlp_predict,
};
