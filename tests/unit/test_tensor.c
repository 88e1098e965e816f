/* test_tensor.c - the cblas wrappers against naive loops and known values. */
#include "rng.h"
#include "tensor.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>

static void fill_normal(gdml_rng *r, float *a, size_t n)
{
    for (size_t i = 0; i < n; i++)
        a[i] = (float)gdml_rng_normal(r);
}

/* Element (i, j) of op(X) where X is stored row-major with leading dimension ld. */
static double at(const float *x, size_t ld, bool trans, size_t i, size_t j)
{
    return trans ? x[j * ld + i] : x[i * ld + j];
}

/*
 * Runs gdml_sgemm on an m x n result with inner dimension k and compares it
 * with a naive triple loop in double. Leading dimensions are padded by pad so
 * that the wrappers are seen to honour them.
 */
static void check_sgemm(bool ta, bool tb, size_t m, size_t n, size_t k, size_t pad, float alpha,
                        float beta)
{
    gdml_rng r;
    gdml_rng_seed(&r, 1000 * m + 100 * n + 10 * k + (ta ? 2 : 0) + (tb ? 1 : 0));
    size_t a_rows = ta ? k : m, a_cols = ta ? m : k;
    size_t b_rows = tb ? n : k, b_cols = tb ? k : n;
    size_t lda = a_cols + pad, ldb = b_cols + pad, ldc = n + pad;
    float *a = calloc(a_rows * lda, sizeof *a);
    float *b = calloc(b_rows * ldb, sizeof *b);
    float *c = calloc(m * ldc, sizeof *c);
    double *want = calloc(m * ldc, sizeof *want);
    cr_assert(a && b && c && want);
    fill_normal(&r, a, a_rows * lda);
    fill_normal(&r, b, b_rows * ldb);
    fill_normal(&r, c, m * ldc);

    for (size_t i = 0; i < m; i++) {
        for (size_t j = 0; j < ldc; j++) {
            if (j >= n) {
                want[i * ldc + j] = c[i * ldc + j]; /* padding must be left alone */
                continue;
            }
            double s = 0.0;
            for (size_t p = 0; p < k; p++)
                s += at(a, lda, ta, i, p) * at(b, ldb, tb, p, j);
            want[i * ldc + j] = alpha * s + beta * c[i * ldc + j];
        }
    }
    gdml_sgemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    for (size_t i = 0; i < m * ldc; i++)
        cr_assert(fabs(c[i] - want[i]) <= 1e-4 * (1.0 + fabs(want[i])),
                  "ta=%d tb=%d m=%zu n=%zu k=%zu: c[%zu] = %g, want %g", ta, tb, m, n, k, i,
                  (double)c[i], want[i]);
    free(a);
    free(b);
    free(c);
    free(want);
}

Test(tensor, sgemm_all_transposes_non_square)
{
    gdml_tensor_set_threads(1);
    for (int ta = 0; ta < 2; ta++) {
        for (int tb = 0; tb < 2; tb++) {
            check_sgemm(ta, tb, 5, 3, 4, 0, 1.0f, 0.0f);
            check_sgemm(ta, tb, 2, 7, 9, 0, 0.5f, 0.0f);
            check_sgemm(ta, tb, 13, 1, 6, 0, 1.0f, 1.0f);
            check_sgemm(ta, tb, 1, 11, 3, 0, -2.0f, 0.25f);
            check_sgemm(ta, tb, 37, 29, 41, 0, 1.0f, 0.0f);
        }
    }
}

Test(tensor, sgemm_padded_leading_dimensions)
{
    for (int ta = 0; ta < 2; ta++)
        for (int tb = 0; tb < 2; tb++)
            check_sgemm(ta, tb, 6, 4, 5, 3, 1.5f, -0.5f);
}

Test(tensor, sgemm_empty_inner_dimension_scales_c)
{
    float c[6] = {1, 2, 3, 4, 5, 6};
    gdml_sgemm(false, false, 2, 3, 0, 1.0f, NULL, 0, NULL, 3, 2.0f, c, 3);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(c[i], 2.0f * (float)(i + 1));
    c[4] = NAN;
    gdml_sgemm(true, false, 2, 3, 0, 1.0f, NULL, 2, NULL, 3, 0.0f, c, 3);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(c[i], 0.0f, "beta = 0 must clear c[%d]", i);
}

Test(tensor, sgemm_empty_result_touches_nothing)
{
    float c[2] = {7, 8};
    gdml_sgemm(false, false, 0, 2, 3, 1.0f, NULL, 3, NULL, 2, 0.0f, c, 2);
    cr_assert(c[0] == 7 && c[1] == 8);
}

Test(tensor, saxpy)
{
    float x[4] = {1, 2, 3, 4};
    float y[4] = {10, 20, 30, 40};
    gdml_saxpy(4, -2.0f, x, y);
    float want[4] = {8, 16, 24, 32};
    for (int i = 0; i < 4; i++)
        cr_assert_eq(y[i], want[i]);
    gdml_saxpy(0, 5.0f, x, y);
    cr_assert_eq(y[0], 8.0f);
}

Test(tensor, sscal)
{
    float x[5] = {1, -2, 3, -4, 0.5f};
    gdml_sscal(5, -0.5f, x);
    float want[5] = {-0.5f, 1, -1.5f, 2, -0.25f};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(x[i], want[i]);
    gdml_sscal(5, 0.0f, x);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(x[i], 0.0f);
}

Test(tensor, sdot)
{
    float x[3] = {1, 2, 3};
    float y[3] = {4, -5, 6};
    cr_assert_eq(gdml_sdot(3, x, y), 12.0);
    cr_assert_eq(gdml_sdot(0, x, y), 0.0);
}

Test(tensor, sdot_accumulates_in_double)
{
    /* 2^24 + 1 + ... is not representable in float; the sum must stay exact. */
    enum { N = 1001 };
    float x[N], y[N];
    x[0] = 16777216.0f;
    y[0] = 1.0f;
    for (int i = 1; i < N; i++) {
        x[i] = 1.0f;
        y[i] = 1.0f;
    }
    cr_assert_eq(gdml_sdot(N, x, y), 16777216.0 + 1000.0);
}

Test(tensor, snrm2)
{
    float x[2] = {3, -4};
    cr_assert_eq(gdml_snrm2(2, x), 5.0);
    cr_assert_eq(gdml_snrm2(0, x), 0.0);
    /* Squares beyond FLT_MAX must not overflow. */
    float big[2] = {3e30f, 4e30f};
    cr_assert(fabs(gdml_snrm2(2, big) - 5e30) <= 1e24);
}

Test(tensor, ssub_with_and_without_aliasing)
{
    float a[3] = {5, 7, 9};
    float b[3] = {1, 2, 3};
    float out[3];
    gdml_ssub(3, a, b, out);
    cr_assert(out[0] == 4 && out[1] == 5 && out[2] == 6);
    gdml_ssub(3, a, b, a);
    cr_assert(a[0] == 4 && a[1] == 5 && a[2] == 6);
    gdml_ssub(3, a, b, b);
    cr_assert(b[0] == 3 && b[1] == 3 && b[2] == 3);
}

Test(tensor, szero)
{
    float x[4] = {1, NAN, -3, 4};
    gdml_szero(3, x);
    cr_assert(x[0] == 0 && x[1] == 0 && x[2] == 0 && x[3] == 4);
}
