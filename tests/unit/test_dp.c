/*
 * test_dp.c - the Gaussian mechanism on deltas: clipping to the norm, the
 * noise's mean and standard deviation, seeded streams that repeat and
 * random ones that do not, and the budget's limit.
 */
#include "dp.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static gdml_dp *make(double clip, double z, uint64_t seed, const char *name)
{
    gdml_dp_config c = {.clip = clip, .noise_multiplier = z, .delta = 1e-5, .seed = seed};
    gdml_dp *d = NULL;
    gdml_errmsg e;
    cr_assert_eq(gdml_dp_new(&c, name, &d, &e), GDML_OK, "%s", e.text);
    return d;
}

static double norm(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

Test(dp, clips_to_the_norm_and_keeps_the_direction)
{
    /* Noise tiny against the clip: what is left is the clipped delta. */
    gdml_dp *d = make(1.0, 1e-9, 7, "r");
    float x[5] = {3, 4, 0, 0, 0};
    double before = gdml_dp_privatize(d, x, 5);
    cr_assert_float_eq(before, 5.0, 1e-9);
    cr_assert_float_eq(norm(x, 5), 1.0, 1e-6);
    cr_assert_float_eq(x[0], 0.6f, 1e-6);
    cr_assert_float_eq(x[1], 0.8f, 1e-6);
    /* Within the clip: unchanged. */
    float y[2] = {0.3f, 0.4f};
    gdml_dp_privatize(d, y, 2);
    cr_assert_float_eq(y[0], 0.3f, 1e-6);
    cr_assert_float_eq(y[1], 0.4f, 1e-6);
    gdml_dp_destroy(&d);
    cr_assert_null(d);
    gdml_dp_destroy(&d);
}

Test(dp, noise_has_mean_zero_and_std_noise_times_clip)
{
    gdml_dp *d = make(0.5, 2.0, 11, "us-east");
    size_t n = 200001; /* odd: the last entry gets a lone normal */
    float *x = calloc(n, sizeof *x);
    gdml_dp_privatize(d, x, n);
    double sum = 0, sq = 0, kurt = 0;
    for (size_t i = 0; i < n; i++) {
        sum += x[i];
        sq += (double)x[i] * x[i];
    }
    double mean = sum / n, var = sq / n - mean * mean;
    for (size_t i = 0; i < n; i++)
        kurt += pow(x[i] - mean, 4);
    kurt /= n * var * var;
    /* std 1.0; the mean's own std is 1/sqrt(n) ~ 0.0022 */
    cr_assert(fabs(mean) < 0.01, "mean %g", mean);
    cr_assert(fabs(sqrt(var) - 1.0) < 0.01, "std %g, want 1.0", sqrt(var));
    cr_assert(fabs(kurt - 3.0) < 0.1, "kurtosis %g, a normal's is 3", kurt);
    cr_assert_neq(x[n - 1], 0.0f);
    free(x);
    gdml_dp_destroy(&d);
}

Test(dp, seeded_streams_repeat_random_ones_do_not)
{
    float a[64] = {0}, b[64] = {0}, c[64] = {0}, r1[64] = {0}, r2[64] = {0};
    gdml_dp *da = make(1, 1, 5, "eu-west"), *db = make(1, 1, 5, "eu-west"),
            *dc = make(1, 1, 5, "ap-south"), *x1 = make(1, 1, 0, "eu-west"),
            *x2 = make(1, 1, 0, "eu-west");
    gdml_dp_privatize(da, a, 64);
    gdml_dp_privatize(db, b, 64);
    gdml_dp_privatize(dc, c, 64);
    gdml_dp_privatize(x1, r1, 64);
    gdml_dp_privatize(x2, r2, 64);
    cr_assert(memcmp(a, b, sizeof a) == 0, "the same seed and name gave other noise");
    cr_assert(memcmp(a, c, sizeof a) != 0, "two regions of one seed share their noise");
    cr_assert(memcmp(r1, r2, sizeof r1) != 0, "two random keys gave the same noise");
    /* Each call draws anew: the second release's noise is not the first's. */
    float a2[64] = {0};
    gdml_dp_privatize(da, a2, 64);
    cr_assert(memcmp(a, a2, sizeof a) != 0, "a stream repeated its noise");
    gdml_dp_destroy(&da);
    gdml_dp_destroy(&db);
    gdml_dp_destroy(&dc);
    gdml_dp_destroy(&x1);
    gdml_dp_destroy(&x2);
}

Test(dp, bad_configurations_are_refused)
{
    gdml_dp_config bad[] = {{.clip = 0, .noise_multiplier = 1, .delta = 1e-5},
                            {.clip = 1, .noise_multiplier = 0, .delta = 1e-5},
                            {.clip = 1, .noise_multiplier = 1, .delta = 0},
                            {.clip = 1, .noise_multiplier = 1, .delta = 1},
                            {.clip = NAN, .noise_multiplier = 1, .delta = 1e-5}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        gdml_dp *d = NULL;
        gdml_errmsg e;
        cr_assert_eq(gdml_dp_new(&bad[i], "r", &d, &e), GDML_ERR_INVALID, "config %zu", i);
        cr_assert_null(d);
        cr_assert(strstr(e.text, "noise_multiplier"), "%s", e.text);
    }
}

Test(dp, the_limit_allows_exactly_the_releases_that_fit)
{
    gdml_dp_config c = {.clip = 1, .noise_multiplier = 3.0, .delta = 1e-5, .epsilon_limit = 8};
    uint64_t k = gdml_dp_max_releases(&c, 100000);
    cr_assert(k >= 1 && k < 100000, "%llu releases", (unsigned long long)k);
    cr_assert(gdml_dp_epsilon(&c, k) <= 8 && gdml_dp_epsilon(&c, k + 1) > 8);
    cr_assert(gdml_dp_release_allowed(&c, k - 1));
    cr_assert(!gdml_dp_release_allowed(&c, k));
    cr_assert_eq(gdml_dp_epsilon(&c, 0), 0);
    /* The noise that would allow twice as many releases. */
    double z = gdml_dp_noise_for(&c, 2 * k);
    gdml_dp_config more = c;
    more.noise_multiplier = z;
    cr_assert(z > 3.0 && gdml_dp_epsilon(&more, 2 * k) <= 8, "noise %g", z);
    more.noise_multiplier = z * 0.98;
    cr_assert(gdml_dp_epsilon(&more, 2 * k) > 8, "noise %g is not near the smallest", z);
    /* No limit: every release is allowed. */
    c.epsilon_limit = 0;
    cr_assert(gdml_dp_release_allowed(&c, 1000000));
    cr_assert_eq(gdml_dp_max_releases(&c, 77), 77);
}
