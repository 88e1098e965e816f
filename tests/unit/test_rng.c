/* test_rng.c - the generator's determinism and the distributions' moments. */
#include "rng.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

Test(rng, same_seed_same_stream)
{
    gdml_rng a, b;
    gdml_rng_seed(&a, 42);
    gdml_rng_seed(&b, 42);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(gdml_rng_u64(&a), gdml_rng_u64(&b), "streams diverge at draw %d", i);
}

Test(rng, different_seeds_differ)
{
    gdml_rng a, b;
    gdml_rng_seed(&a, 42);
    gdml_rng_seed(&b, 43);
    int same = 0;
    for (int i = 0; i < 1000; i++)
        same += gdml_rng_u64(&a) == gdml_rng_u64(&b);
    cr_assert_eq(same, 0, "%d of 1000 draws equal for seeds 42 and 43", same);
}

Test(rng, seed_zero_is_usable)
{
    gdml_rng r;
    gdml_rng_seed(&r, 0);
    uint64_t x = 0;
    for (int i = 0; i < 8; i++)
        x |= gdml_rng_u64(&r);
    cr_assert_neq(x, 0);
}

Test(rng, known_stream_is_stable)
{
    /* splitmix64's published first output for seed 0 is the first state word. */
    gdml_rng r;
    gdml_rng_seed(&r, 0);
    cr_assert_eq(r.s[0], 0xe220a8397b1dcdafULL);
    /*
     * Pinned outputs: changing them changes every split and run made from a
     * seed, so do it only on purpose.
     */
    const uint64_t expect[] = {0xb3f2af6d0fc710c5ULL, 0x853b559647364ceaULL, 0x92f89756082a4514ULL};
    gdml_rng_seed(&r, 1);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(gdml_rng_u64(&r), expect[i], "draw %d", i);
}

Test(rng, uniform_in_range_with_mean_half)
{
    gdml_rng r;
    gdml_rng_seed(&r, 7);
    double sum = 0.0;
    const int n = 100000;
    for (int i = 0; i < n; i++) {
        double u = gdml_rng_uniform(&r);
        cr_assert(u >= 0.0 && u < 1.0, "uniform gave %g", u);
        sum += u;
    }
    /* The standard error is 1/sqrt(12 n) ~ 0.0009. */
    cr_assert(fabs(sum / n - 0.5) < 0.005, "mean %g", sum / n);
}

Test(rng, below_stays_in_bounds)
{
    gdml_rng r;
    gdml_rng_seed(&r, 9);
    for (int i = 0; i < 10000; i++)
        cr_assert_eq(gdml_rng_below(&r, 1), 0);
    uint64_t bounds[] = {2, 3, 7, 1000, (1ULL << 63) + 1, UINT64_MAX};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++)
        for (int i = 0; i < 10000; i++) {
            uint64_t x = gdml_rng_below(&r, bounds[b]);
            cr_assert(x < bounds[b], "below(%llu) gave %llu", (unsigned long long)bounds[b],
                      (unsigned long long)x);
        }
}

Test(rng, below_is_roughly_uniform)
{
    gdml_rng r;
    gdml_rng_seed(&r, 11);
    enum { K = 10, N = 100000 };
    int count[K] = {0};
    for (int i = 0; i < N; i++)
        count[gdml_rng_below(&r, K)]++;
    double chi2 = 0.0;
    for (int k = 0; k < K; k++) {
        double d = count[k] - N / (double)K;
        chi2 += d * d / (N / (double)K);
    }
    /* 9 degrees of freedom: P(chi2 > 30) < 0.001. */
    cr_assert(chi2 < 30.0, "chi-square %g over %d buckets", chi2, K);

    /* A bound just over 2^63 is where a modulo would be most biased (2:1). */
    uint64_t big = (1ULL << 63) + (1ULL << 62);
    int low = 0;
    for (int i = 0; i < 20000; i++)
        low += gdml_rng_below(&r, big) < big / 2;
    cr_assert(abs(low - 10000) < 600, "%d of 20000 draws fell in the lower half", low);
}

Test(rng, normal_has_zero_mean_unit_variance)
{
    gdml_rng r;
    gdml_rng_seed(&r, 13);
    const int n = 100000;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) {
        double x = gdml_rng_normal(&r);
        sum += x;
        sq += x * x;
    }
    double mean = sum / n, var = sq / n - mean * mean;
    cr_assert(fabs(mean) < 0.02, "mean %g", mean);
    cr_assert(fabs(var - 1.0) < 0.03, "variance %g", var);
}

static void check_gamma(double shape)
{
    gdml_rng r;
    gdml_rng_seed(&r, 17);
    const int n = 100000;
    double sum = 0.0, sq = 0.0;
    for (int i = 0; i < n; i++) {
        double x = gdml_rng_gamma(&r, shape);
        cr_assert(x >= 0.0 && isfinite(x), "gamma(%g) gave %g", shape, x);
        sum += x;
        sq += x * x;
    }
    double mean = sum / n, var = sq / n - mean * mean;
    /* Gamma(k, 1) has mean k and variance k; the standard error of the mean is sqrt(k/n). */
    cr_assert(fabs(mean - shape) < 0.03 * shape + 0.01, "gamma(%g) mean %g", shape, mean);
    cr_assert(fabs(var - shape) < 0.1 * shape, "gamma(%g) variance %g", shape, var);
}

Test(rng, gamma_mean_and_variance_are_shape)
{
    check_gamma(0.3);
    check_gamma(1.0);
    check_gamma(5.0);
}

Test(rng, dirichlet_sums_to_one)
{
    gdml_rng r;
    gdml_rng_seed(&r, 19);
    double alphas[] = {0.001, 0.1, 1.0, 1000.0};
    double p[8];
    for (size_t a = 0; a < sizeof alphas / sizeof alphas[0]; a++)
        for (int t = 0; t < 1000; t++) {
            gdml_rng_dirichlet(&r, alphas[a], p, 8);
            double sum = 0.0;
            for (int k = 0; k < 8; k++) {
                cr_assert(p[k] >= 0.0 && p[k] <= 1.0, "p[%d] = %g", k, p[k]);
                sum += p[k];
            }
            cr_assert(fabs(sum - 1.0) < 1e-9, "alpha %g: sum %.12f", alphas[a], sum);
        }
}

Test(rng, dirichlet_concentration)
{
    gdml_rng r;
    gdml_rng_seed(&r, 23);
    double p[4], max_small = 0.0, max_large = 0.0;
    for (int t = 0; t < 200; t++) {
        gdml_rng_dirichlet(&r, 0.05, p, 4);
        for (int k = 0; k < 4; k++)
            max_small += p[k] > 0.9;
        gdml_rng_dirichlet(&r, 1000.0, p, 4);
        for (int k = 0; k < 4; k++)
            max_large = fmax(max_large, fabs(p[k] - 0.25));
    }
    /* Small alpha puts nearly all mass on one part most of the time (about 2/3 here). */
    cr_assert(max_small > 100, "%g of 200 draws had a part above 0.9", max_small);
    cr_assert(max_large < 0.05, "alpha 1000 strayed %g from uniform", max_large);
}

Test(rng, shuffle_is_a_permutation)
{
    gdml_rng r;
    gdml_rng_seed(&r, 29);
    enum { N = 1000 };
    uint32_t a[N];
    for (uint32_t i = 0; i < N; i++)
        a[i] = i;
    gdml_rng_shuffle_u32(&r, a, N);
    int seen[N] = {0}, fixed = 0;
    for (uint32_t i = 0; i < N; i++) {
        cr_assert(a[i] < N);
        seen[a[i]]++;
        fixed += a[i] == i;
    }
    for (int i = 0; i < N; i++)
        cr_assert_eq(seen[i], 1, "value %d appears %d times", i, seen[i]);
    cr_assert(fixed < 10, "%d of %d elements stayed in place", fixed, N);
    gdml_rng_shuffle_u32(&r, a, 0);
    gdml_rng_shuffle_u32(&r, a, 1);
}

Test(rng, shuffle_positions_are_uniform)
{
    gdml_rng r;
    gdml_rng_seed(&r, 31);
    enum { K = 4, T = 40000 };
    int where[K] = {0};
    for (int t = 0; t < T; t++) {
        uint32_t a[K] = {0, 1, 2, 3};
        gdml_rng_shuffle_u32(&r, a, K);
        for (int k = 0; k < K; k++)
            if (a[k] == 0)
                where[k]++;
    }
    for (int k = 0; k < K; k++)
        cr_assert(abs(where[k] - T / K) < 500, "element 0 landed at %d %d times", k, where[k]);
}
