/*
 * rdp.c - the RDP accountant (rdp.h): the Gaussian mechanism's RDP, plain
 * and Poisson-subsampled, composed over steps and converted to (epsilon,
 * delta) at the best order of a fixed grid.
 */
#include "rdp.h"

#include <math.h>
#include <stddef.h>

/* log(exp(a) + exp(b)) without overflow. */
static double log_add(double a, double b)
{
    if (a == -INFINITY)
        return b;
    if (b == -INFINITY)
        return a;
    double hi = a > b ? a : b, lo = a > b ? b : a;
    return hi + log1p(exp(lo - hi));
}

/* Mironov, Talwar and Zhang 2019, integer orders: with A_a the sum over
 * k = 0..a of C(a, k) (1 - q)^(a - k) q^k exp((k^2 - k) / (2 sigma^2)),
 * the RDP at order a is log(A_a) / (a - 1). Summed in logs: the terms
 * reach exp(a^2 / 2 sigma^2). */
static double subsampled_int(double q, double sigma, unsigned a)
{
    double log_q = log(q), log_1q = log1p(-q), log_a = -INFINITY;
    for (unsigned k = 0; k <= a; k++) {
        double log_binom = lgamma(a + 1.0) - lgamma(k + 1.0) - lgamma(a - k + 1.0);
        double term =
            log_binom + k * log_q + (a - k) * log_1q + ((double)k * k - k) / (2.0 * sigma * sigma);
        log_a = log_add(log_a, term);
    }
    return log_a / (a - 1.0);
}

double gdml_rdp_gaussian(double q, double sigma, double alpha)
{
    if (sigma <= 0)
        return INFINITY;
    if (q >= 1.0)
        return alpha / (2.0 * sigma * sigma);
    if (q <= 0)
        return 0;
    return subsampled_int(q, sigma, (unsigned)ceil(alpha));
}

static double to_eps(double rdp, double a, double delta, gdml_rdp_conversion conv)
{
    double eps = conv == GDML_RDP_MIRONOV2017
                     ? rdp + log(1.0 / delta) / (a - 1.0)
                     : rdp + log1p(-1.0 / a) - (log(delta) + log(a)) / (a - 1.0);
    return eps > 0 ? eps : 0;
}

/* The orders tried. The full-batch case is cheap (closed form), so it gets
 * a fine geometric grid from 1.01 to 10^6: the best order grows like
 * sigma * sqrt(2 log(1/delta) / steps), which for few steps and much
 * noise is in the hundreds. The subsampled case costs a sum of a terms per
 * order, so it gets the integers up to 256 and a few beyond, as TF-Privacy's
 * and Opacus's grids do. */
#define FULL_ORDERS 401
#define SAMPLED_ORDERS 258

static double order_at(bool full, int i)
{
    if (full)
        return 1.0 + pow(10.0, (i - 100) / 50.0);
    if (i < 255)
        return i + 2.0; /* 2..256 */
    return i == 255 ? 384.0 : i == 256 ? 512.0 : 1024.0;
}

double gdml_rdp_epsilon(double q, double sigma, uint64_t steps, double delta,
                        gdml_rdp_conversion conv, double *order)
{
    if (steps == 0) {
        if (order)
            *order = 0;
        return 0;
    }
    if (sigma <= 0)
        return INFINITY;
    bool full = q >= 1.0;
    int n = full ? FULL_ORDERS : SAMPLED_ORDERS;
    double best = INFINITY, best_a = 0;
    for (int i = 0; i < n; i++) {
        double a = order_at(full, i);
        double eps = to_eps((double)steps * gdml_rdp_gaussian(q, sigma, a), a, delta, conv);
        if (eps < best) {
            best = eps;
            best_a = a;
        }
    }
    if (order)
        *order = best_a;
    return best;
}

uint64_t gdml_rdp_max_steps(double q, double sigma, double delta, double limit, uint64_t cap)
{
    if (gdml_rdp_epsilon(q, sigma, cap, delta, GDML_RDP_BALLE2020, NULL) <= limit)
        return cap;
    /* epsilon grows with steps: the largest that fits lies in [lo, hi). */
    uint64_t lo = 0, hi = cap;
    while (hi - lo > 1) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (gdml_rdp_epsilon(q, sigma, mid, delta, GDML_RDP_BALLE2020, NULL) <= limit)
            lo = mid;
        else
            hi = mid;
    }
    return lo;
}
