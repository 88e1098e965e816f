/*
 * dp.h - differential privacy on a region's delta: the Gaussian mechanism
 * (clip the delta's L2 norm to `clip`, add N(0, (noise_multiplier * clip)^2)
 * to every entry) and the privacy it has spent, in epsilon at `delta`
 * (rdp.h), counted in releases: deltas sent to the coordinator.
 *
 * What is protected is a region's contribution to a round (silo-level DP,
 * docs/privacy.md): every region takes part in every round, so there is no
 * sampling to amplify privacy, and each release is one full-batch Gaussian
 * mechanism of sensitivity `clip`.
 *
 * Noise comes from ChaCha20 (libsodium) under a 256-bit key. By default the
 * key is drawn from libsodium's randombytes (the operating system's CSPRNG),
 * fresh in every process. With a seed, the key is a BLAKE2b hash of the
 * seed and a stream name (the region's), so a test's noise repeats; a seeded
 * stream restarts with its process and must never protect real data.
 */
#ifndef GDML_DP_H
#define GDML_DP_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gdml_dp gdml_dp;

typedef struct gdml_dp_config {
    double clip;             /* L2 norm a delta is clipped to (> 0) */
    double noise_multiplier; /* noise std / clip (> 0) */
    double delta;            /* the delta epsilon is reported at (0 < delta < 1) */
    double epsilon_limit;    /* no release may take epsilon above this (0: no limit) */
    uint64_t seed;           /* 0: a random key; else a key derived from it (tests) */
} gdml_dp_config;

/*
 * Makes a noise source for the stream `name`. GDML_ERR_INVALID with e for
 * a bad configuration, GDML_ERR_IO if libsodium cannot start.
 */
gdml_err gdml_dp_new(const gdml_dp_config *cfg, const char *name, gdml_dp **out, gdml_errmsg *e);

/* Frees it. NULL-safe; clears *d. */
void gdml_dp_destroy(gdml_dp **d);

/* Its configuration. */
const gdml_dp_config *gdml_dp_config_of(const gdml_dp *d);

/*
 * Clips x[0..n) to L2 norm clip and adds the noise, in place. Returns x's
 * norm before clipping (what an operator tunes clip by).
 */
double gdml_dp_privatize(gdml_dp *d, float *x, size_t n);

/* Epsilon at cfg->delta after `releases` releases (0 for none). */
double gdml_dp_epsilon(const gdml_dp_config *cfg, uint64_t releases);

/* True if one more release after `releases` keeps epsilon within the limit. */
bool gdml_dp_release_allowed(const gdml_dp_config *cfg, uint64_t releases);

/* The most releases the limit allows, up to cap (cap with no limit). */
uint64_t gdml_dp_max_releases(const gdml_dp_config *cfg, uint64_t cap);

/*
 * The smallest noise multiplier (to 3 significant digits, rounded up) whose
 * epsilon after `releases` releases is within the limit; for messages that
 * say what to change.
 */
double gdml_dp_noise_for(const gdml_dp_config *cfg, uint64_t releases);

#endif
