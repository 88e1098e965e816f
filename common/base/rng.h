/*
 * rng.h - a small, fast, seedable random generator (xoshiro256**, seeded
 * through splitmix64) and the distributions gdml needs. The same seed gives
 * the same stream on every machine, which makes splits and runs repeatable.
 */
#ifndef GDML_RNG_H
#define GDML_RNG_H

#include <stddef.h>
#include <stdint.h>

typedef struct gdml_rng {
    uint64_t s[4];
} gdml_rng;

void gdml_rng_seed(gdml_rng *r, uint64_t seed);
uint64_t gdml_rng_u64(gdml_rng *r);
/* Uniform in [0, 1). */
double gdml_rng_uniform(gdml_rng *r);
/* Uniform integer in [0, bound), without modulo bias; bound > 0. */
uint64_t gdml_rng_below(gdml_rng *r, uint64_t bound);
/* Standard normal. */
double gdml_rng_normal(gdml_rng *r);
/* Gamma(shape, 1), shape > 0 (Marsaglia-Tsang; boosted for shape < 1). */
double gdml_rng_gamma(gdml_rng *r, double shape);
/* Fills p[0..k) with a draw from Dirichlet(alpha, ..., alpha). */
void gdml_rng_dirichlet(gdml_rng *r, double alpha, double *p, size_t k);
/* Fisher-Yates shuffle of a[0..n). */
void gdml_rng_shuffle_u32(gdml_rng *r, uint32_t *a, size_t n);

#endif
