/*
 * tensor.c - row-major float32 math over OpenBLAS's cblas.
 *
 * The only file in gdml that includes <cblas.h>. cblas counts in int (blasint
 * is a 32-bit int in the Debian OpenBLAS builds), while gdml counts in size_t:
 *
 *  - level-1 wrappers (saxpy, sscal) split long vectors into pieces of at most
 *    INT_MAX elements, so any size_t length works;
 *  - gdml_sgemm asserts that every dimension and leading dimension fits in an
 *    int. A matrix side beyond 2^31 is a programmer error (a layout allows at
 *    most 10^8 inputs and batches are far smaller), not an input to report.
 *
 * Dot products and norms are plain loops accumulating in double rather than
 * cblas_sdot/cblas_snrm2: those return float, and their summation order
 * depends on the CPU kernel and thread count. Our loops give the same answer
 * on every machine, which matters when regions compare norms for budgets.
 */
#include "tensor.h"

#include <assert.h>
#include <cblas.h>
#include <limits.h>
#include <math.h>

void gdml_tensor_set_threads(int n)
{
    assert(n >= 1);
    openblas_set_num_threads(n);
}

/* Converts a matrix dimension for cblas; see the file comment for why it asserts. */
static int blas_int(size_t v)
{
    assert(v <= (size_t)INT_MAX);
    return (int)v;
}

void gdml_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc)
{
    assert(ldc >= n);
    if (m == 0 || n == 0)
        return;
    if (k == 0) {
        /*
         * Empty product: C = beta * C. Done here because cblas rejects the
         * leading dimension 0 that callers naturally pass for k == 0, and
         * beta == 0 must clear C even if it holds NaN (BLAS semantics).
         */
        for (size_t i = 0; i < m; i++) {
            float *row = c + i * ldc;
            for (size_t j = 0; j < n; j++)
                row[j] = beta == 0.0f ? 0.0f : beta * row[j];
        }
        return;
    }
    /* Row-major: A is m x k stored k wide, or k x m stored m wide if trans_a. */
    assert(lda >= (trans_a ? m : k));
    assert(ldb >= (trans_b ? k : n));
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, blas_int(m), blas_int(n), blas_int(k), alpha,
                a, blas_int(lda), b, blas_int(ldb), beta, c, blas_int(ldc));
}

void gdml_saxpy(size_t n, float alpha, const float *x, float *y)
{
    while (n > 0) {
        int piece = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        cblas_saxpy(piece, alpha, x, 1, y, 1);
        x += piece;
        y += piece;
        n -= (size_t)piece;
    }
}

void gdml_sscal(size_t n, float alpha, float *x)
{
    while (n > 0) {
        int piece = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        cblas_sscal(piece, alpha, x, 1);
        x += piece;
        n -= (size_t)piece;
    }
}

double gdml_sdot(size_t n, const float *x, const float *y)
{
    double sum = 0.0;
    for (size_t i = 0; i < n; i++)
        sum += (double)x[i] * (double)y[i];
    return sum;
}

double gdml_snrm2(size_t n, const float *x)
{
    /* A float squared is below 1.2e77, so the double sum cannot overflow.
     * Four sums, not one: one chain of dependent additions took a cycle or
     * more a value, and the server takes the norm of every gradient chunk. */
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        for (size_t j = 0; j < 4; j++)
            s[j] += (double)x[i + j] * (double)x[i + j];
    for (; i < n; i++)
        s[0] += (double)x[i] * (double)x[i];
    return sqrt((s[0] + s[1]) + (s[2] + s[3]));
}

void gdml_ssub(size_t n, const float *a, const float *b, float *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] - b[i];
}

void gdml_szero(size_t n, float *x)
{
    for (size_t i = 0; i < n; i++)
        x[i] = 0.0f;
}
