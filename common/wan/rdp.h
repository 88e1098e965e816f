/*
 * rdp.h - a Rényi differential privacy (RDP) accountant for the Gaussian
 * mechanism, plain or Poisson-subsampled, and its conversion to (epsilon,
 * delta). Pure arithmetic: no state, no I/O, so that it can be checked
 * against published figures (tests/unit/test_rdp.c).
 *
 * A mechanism that adds N(0, (sigma * C)^2) noise per coordinate to a value
 * of L2 sensitivity C is (alpha, alpha / (2 sigma^2))-RDP for every order
 * alpha > 1 (Mironov 2017, Prop. 7). Applied to a Poisson sample of rate q,
 * its RDP at integer orders is the exact binomial expansion of Mironov,
 * Talwar and Zhang 2019 (Sec. 3.3). RDP composes by addition over steps.
 * The conversion to (epsilon, delta) is the improved one of Balle et al.
 * 2020 (Thm. 21; also Canonne, Kamath and Steinke 2020), which Opacus and
 * Google's dp_accounting use; the classic bound of Mironov 2017 (Prop. 3),
 * epsilon = rdp + log(1/delta) / (alpha - 1), is larger and kept for
 * comparison with figures published with it. Each is minimised over a grid
 * of orders.
 */
#ifndef GDML_RDP_H
#define GDML_RDP_H

#include <stdbool.h>
#include <stdint.h>

/* How RDP becomes (epsilon, delta). */
typedef enum gdml_rdp_conversion {
    GDML_RDP_BALLE2020,  /* rdp + log1p(-1/a) - (log(delta) + log(a)) / (a - 1) */
    GDML_RDP_MIRONOV2017 /* rdp + log(1/delta) / (a - 1) */
} gdml_rdp_conversion;

/*
 * RDP at order alpha of one step of the Gaussian mechanism with noise
 * multiplier sigma (> 0) on a Poisson sample of rate q (0 < q <= 1). With
 * q = 1 any real alpha > 1 is exact; with q < 1 alpha is rounded up to an
 * integer (RDP grows with the order, so this is an upper bound).
 */
double gdml_rdp_gaussian(double q, double sigma, double alpha);

/*
 * Epsilon at delta (0 < delta < 1) after `steps` steps of that mechanism,
 * the smallest over the accountant's orders; *order (if not NULL) gets the
 * order that gave it. 0 steps cost 0; sigma = 0 costs infinity.
 */
double gdml_rdp_epsilon(double q, double sigma, uint64_t steps, double delta,
                        gdml_rdp_conversion conv, double *order);

/*
 * The most steps whose epsilon at delta stays at or below limit (improved
 * conversion), up to cap; cap itself if even that many fit.
 */
uint64_t gdml_rdp_max_steps(double q, double sigma, double delta, double limit, uint64_t cap);

#endif
