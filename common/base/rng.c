/*
 * rng.c - xoshiro256** (Blackman and Vigna) seeded through splitmix64, and the
 * distributions built on it. Everything here is plain integer and IEEE double
 * arithmetic, so one seed gives one stream on every machine.
 */
#include "rng.h"

#include <assert.h>
#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

void gdml_rng_seed(gdml_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    /* splitmix64 never yields four zero words, which xoshiro must not start from. */
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t gdml_rng_u64(gdml_rng *r)
{
    uint64_t *s = r->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

double gdml_rng_uniform(gdml_rng *r)
{
    return (double)(gdml_rng_u64(r) >> 11) * 0x1.0p-53;
}

/* Uniform in (0, 1): never 0, for logarithms and powers. */
static double uniform_open(gdml_rng *r)
{
    return ((double)(gdml_rng_u64(r) >> 11) + 0.5) * 0x1.0p-53;
}

uint64_t gdml_rng_below(gdml_rng *r, uint64_t bound)
{
    assert(bound > 0);
    /*
     * Rejection: 2^64 mod bound values at the bottom of the range would make
     * the low residues more likely, so draws below that threshold are redrawn.
     * The threshold is below bound, so at most half of the draws are rejected.
     */
    uint64_t threshold = (0 - bound) % bound;
    for (;;) {
        uint64_t x = gdml_rng_u64(r);
        if (x >= threshold)
            return x % bound;
    }
}

double gdml_rng_normal(gdml_rng *r)
{
    /* Marsaglia's polar method; the second variate is dropped to keep no state. */
    for (;;) {
        double u = 2.0 * gdml_rng_uniform(r) - 1.0;
        double v = 2.0 * gdml_rng_uniform(r) - 1.0;
        double s = u * u + v * v;
        if (s > 0.0 && s < 1.0)
            return u * sqrt(-2.0 * log(s) / s);
    }
}

double gdml_rng_gamma(gdml_rng *r, double shape)
{
    assert(shape > 0.0);
    if (shape < 1.0) {
        /* Gamma(a) = Gamma(a + 1) * U^(1/a) (Marsaglia and Tsang, section 6). */
        double g = gdml_rng_gamma(r, shape + 1.0);
        return g * pow(uniform_open(r), 1.0 / shape);
    }
    double d = shape - 1.0 / 3.0;
    double c = 1.0 / sqrt(9.0 * d);
    for (;;) {
        double x, v;
        do {
            x = gdml_rng_normal(r);
            v = 1.0 + c * x;
        } while (v <= 0.0);
        v = v * v * v;
        double u = uniform_open(r);
        double x2 = x * x;
        if (u < 1.0 - 0.0331 * x2 * x2)
            return d * v;
        if (log(u) < 0.5 * x2 + d * (1.0 - v + log(v)))
            return d * v;
    }
}

void gdml_rng_dirichlet(gdml_rng *r, double alpha, double *p, size_t k)
{
    assert(alpha > 0.0);
    if (k == 0)
        return;
    double sum = 0.0;
    for (size_t i = 0; i < k; i++) {
        p[i] = gdml_rng_gamma(r, alpha);
        sum += p[i];
    }
    if (sum > 0.0) {
        for (size_t i = 0; i < k; i++)
            p[i] /= sum;
        return;
    }
    /*
     * For a tiny alpha every gamma draw can underflow to 0. The Dirichlet then
     * tends to a one-hot vector at a uniformly chosen position, so return that.
     */
    size_t hot = (size_t)gdml_rng_below(r, k);
    for (size_t i = 0; i < k; i++)
        p[i] = i == hot ? 1.0 : 0.0;
}

void gdml_rng_shuffle_u32(gdml_rng *r, uint32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)gdml_rng_below(r, i);
        uint32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}
