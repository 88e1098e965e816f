/*
 * test_rdp.c - the RDP accountant against closed forms and published
 * figures:
 *   - the Gaussian mechanism's RDP, alpha / (2 sigma^2) (Mironov 2017,
 *     Prop. 7), and the subsampled expansion reducing to it at q = 1;
 *   - Abadi et al. 2016 (Sec. 3.1): q = 0.01, sigma = 4, delta = 1e-5,
 *     T = 10,000 steps give epsilon ~ 1.26 (moments accountant, the classic
 *     conversion);
 *   - TensorFlow Privacy's tutorials/README.md table (MNIST, 60,000
 *     examples, batches of 256, delta = 1e-5, classic conversion):
 *     sigma 1.12 for 60 epochs: 2.92; sigma 1.2 for 10 epochs: 1.20;
 *     sigma 0.6 for 30 epochs: 9.74 (its grid has fractional orders, ours
 *     integer ones for a sampled mechanism, so ours may be a little higher);
 *   - the improved conversion (Balle et al. 2020) never above the classic.
 */
#include "rdp.h"

#include <criterion/criterion.h>
#include <math.h>

Test(rdp, gaussian_is_alpha_over_two_sigma_squared)
{
    double sigmas[] = {0.5, 1.0, 1.1, 4.0};
    double alphas[] = {1.5, 2.0, 8.0, 32.0};
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++)
            cr_assert_float_eq(gdml_rdp_gaussian(1.0, sigmas[i], alphas[j]),
                               alphas[j] / (2 * sigmas[i] * sigmas[i]), 1e-12);
}

Test(rdp, subsampled_expansion_tends_to_the_full_batch_one)
{
    /* q -> 1: the binomial sum is the single term exp((a^2 - a) / 2 sigma^2). */
    for (unsigned a = 2; a <= 64; a *= 2)
        cr_assert_float_eq(gdml_rdp_gaussian(1 - 1e-9, 1.3, a), a / (2 * 1.3 * 1.3), 1e-6,
                           "order %u", a);
    /* A sample of rate q costs less than the whole batch, and less at smaller q. */
    double full = gdml_rdp_gaussian(1.0, 1.0, 8);
    double half = gdml_rdp_gaussian(0.5, 1.0, 8), tenth = gdml_rdp_gaussian(0.1, 1.0, 8);
    cr_assert(tenth < half && half < full, "%g %g %g", tenth, half, full);
    /* Small q, order 2: log(1 + q^2 (e^(1/sigma^2) - 1)) exactly. */
    double q = 0.01, s = 2.0;
    cr_assert_float_eq(gdml_rdp_gaussian(q, s, 2), log1p(q * q * expm1(1 / (s * s))), 1e-15);
}

Test(rdp, full_batch_epsilon_is_the_minimum_of_the_closed_form)
{
    /* One release at sigma = 1, delta = 1e-5: minimise
     * a / 2 + log1p(-1/a) - (log(delta) + log(a)) / (a - 1) by brute force. */
    double best = INFINITY;
    for (double a = 1.001; a < 200; a += 0.001) {
        double eps = a / 2 + log1p(-1 / a) - (log(1e-5) + log(a)) / (a - 1);
        best = eps < best ? eps : best;
    }
    double order;
    double eps = gdml_rdp_epsilon(1.0, 1.0, 1, 1e-5, GDML_RDP_BALLE2020, &order);
    cr_assert(eps >= best - 1e-9 && eps <= best * 1.002, "epsilon %.6f, the minimum %.6f", eps,
              best);
    cr_assert(order > 1, "order %g", order);
    /* T releases at sigma are one at sigma / sqrt(T). */
    cr_assert_float_eq(gdml_rdp_epsilon(1.0, 4.0, 16, 1e-5, GDML_RDP_BALLE2020, NULL),
                       gdml_rdp_epsilon(1.0, 1.0, 1, 1e-5, GDML_RDP_BALLE2020, NULL), 1e-9);
}

Test(rdp, abadi_2016_moments_accountant_figure)
{
    double eps = gdml_rdp_epsilon(0.01, 4.0, 10000, 1e-5, GDML_RDP_MIRONOV2017, NULL);
    cr_assert(fabs(eps - 1.26) < 0.01, "epsilon %.4f, Abadi et al. report 1.26", eps);
}

Test(rdp, tensorflow_privacy_tutorial_table)
{
    double q = 256.0 / 60000;
    struct {
        double sigma;
        int epochs;
        double published, tol;
    } rows[] = {{1.12, 60, 2.92, 0.01}, {1.2, 10, 1.20, 0.01}, {0.6, 30, 9.74, 0.05}};
    for (int i = 0; i < 3; i++) {
        uint64_t steps = (uint64_t)rows[i].epochs * 60000 / 256;
        double eps = gdml_rdp_epsilon(q, rows[i].sigma, steps, 1e-5, GDML_RDP_MIRONOV2017, NULL);
        cr_assert(eps >= rows[i].published - rows[i].tol && eps <= rows[i].published + rows[i].tol,
                  "sigma %.2f, %d epochs: epsilon %.4f, published %.2f", rows[i].sigma,
                  rows[i].epochs, eps, rows[i].published);
    }
}

Test(rdp, improved_conversion_is_never_above_the_classic)
{
    double qs[] = {0.004, 0.01, 1.0};
    double sigmas[] = {0.7, 1.1, 3.0};
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double a = gdml_rdp_epsilon(qs[i], sigmas[j], 1000, 1e-5, GDML_RDP_BALLE2020, NULL);
            double b = gdml_rdp_epsilon(qs[i], sigmas[j], 1000, 1e-5, GDML_RDP_MIRONOV2017, NULL);
            cr_assert(a <= b && a > 0, "q %g sigma %g: improved %g, classic %g", qs[i], sigmas[j],
                      a, b);
        }
}

Test(rdp, epsilon_grows_with_steps_and_max_steps_inverts_it)
{
    double prev = 0;
    for (uint64_t t = 1; t <= 64; t++) {
        double eps = gdml_rdp_epsilon(1.0, 2.0, t, 1e-5, GDML_RDP_BALLE2020, NULL);
        cr_assert(eps > prev, "step %llu: %g after %g", (unsigned long long)t, eps, prev);
        prev = eps;
    }
    cr_assert_eq(gdml_rdp_epsilon(1.0, 2.0, 0, 1e-5, GDML_RDP_BALLE2020, NULL), 0);
    cr_assert(isinf(gdml_rdp_epsilon(1.0, 0.0, 1, 1e-5, GDML_RDP_BALLE2020, NULL)));
    uint64_t k = gdml_rdp_max_steps(1.0, 2.0, 1e-5, 10.0, 1000);
    cr_assert(k > 0 && k < 1000);
    cr_assert(gdml_rdp_epsilon(1.0, 2.0, k, 1e-5, GDML_RDP_BALLE2020, NULL) <= 10.0);
    cr_assert(gdml_rdp_epsilon(1.0, 2.0, k + 1, 1e-5, GDML_RDP_BALLE2020, NULL) > 10.0);
    cr_assert_eq(gdml_rdp_max_steps(1.0, 2.0, 1e-5, 1e9, 50), 50);
}
