/*
 * tensor.h - the dense float32 math gdml needs, on row-major arrays.
 * This is the only module that touches cblas (OpenBLAS); everything else calls
 * these wrappers, so the BLAS in use can change in one place.
 */
#ifndef GDML_TENSOR_H
#define GDML_TENSOR_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Sets how many threads OpenBLAS may use. gdml runs several processes per
 * machine, so programs call this once at start (1 unless configured).
 */
void gdml_tensor_set_threads(int n);

/* C = alpha * op(A) * op(B) + beta * C, row-major; op(X) = X^T if trans_x. */
void gdml_sgemm(bool trans_a, bool trans_b, size_t m, size_t n, size_t k, float alpha,
                const float *a, size_t lda, const float *b, size_t ldb, float beta, float *c,
                size_t ldc);

/* y += alpha * x */
void gdml_saxpy(size_t n, float alpha, const float *x, float *y);

/* x *= alpha */
void gdml_sscal(size_t n, float alpha, float *x);

/* Returns x . y (accumulated in double). */
double gdml_sdot(size_t n, const float *x, const float *y);

/* Returns ||x||_2. */
double gdml_snrm2(size_t n, const float *x);

/* out = a - b; out may alias a or b. */
void gdml_ssub(size_t n, const float *a, const float *b, float *out);

/* Sets x[0..n) to zero. */
void gdml_szero(size_t n, float *x);

#endif
