/*
 * dp.c - the Gaussian mechanism on a region's delta (dp.h): clipping,
 * noise from a ChaCha20 key stream, and the budget it spends (rdp.h).
 */
#include "dp.h"

#include "rdp.h"

#include <math.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

struct gdml_dp {
    gdml_dp_config cfg;
    unsigned char key[crypto_stream_chacha20_KEYBYTES];
    uint64_t calls; /* the nonce: each call's stream is its own */
};

gdml_err gdml_dp_new(const gdml_dp_config *cfg, const char *name, gdml_dp **out, gdml_errmsg *e)
{
    if (!(cfg->clip > 0) || !(cfg->noise_multiplier > 0) || !(cfg->delta > 0 && cfg->delta < 1) ||
        !(cfg->epsilon_limit >= 0))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "differential privacy needs clip > 0, noise_multiplier > 0, "
                               "0 < delta < 1 and epsilon >= 0 (got %g, %g, %g, %g)",
                               cfg->clip, cfg->noise_multiplier, cfg->delta, cfg->epsilon_limit);
    if (sodium_init() < 0)
        return gdml_errmsg_set(e, GDML_ERR_IO, "libsodium cannot start (no entropy source?)");
    gdml_dp *d = calloc(1, sizeof *d);
    if (!d)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    d->cfg = *cfg;
    if (cfg->seed == 0) {
        randombytes_buf(d->key, sizeof d->key);
    } else {
        unsigned char seed[8];
        for (int i = 0; i < 8; i++)
            seed[i] = (unsigned char)(cfg->seed >> (8 * i));
        crypto_generichash_state h;
        crypto_generichash_init(&h, NULL, 0, sizeof d->key);
        crypto_generichash_update(&h, seed, sizeof seed);
        crypto_generichash_update(&h, (const unsigned char *)name, strlen(name));
        crypto_generichash_final(&h, d->key, sizeof d->key);
    }
    *out = d;
    return GDML_OK;
}

void gdml_dp_destroy(gdml_dp **dp)
{
    gdml_dp *d = dp ? *dp : NULL;
    if (!d)
        return;
    sodium_memzero(d->key, sizeof d->key);
    free(d);
    *dp = NULL;
}

const gdml_dp_config *gdml_dp_config_of(const gdml_dp *d)
{
    return &d->cfg;
}

/* A uniform double in (0, 1] from 53 random bits: log() never sees 0. */
static double uniform(const unsigned char *b)
{
    uint64_t v = 0;
    for (int i = 0; i < 8; i++)
        v = v << 8 | b[i];
    return ((double)(v >> 11) + 1.0) * 0x1.0p-53;
}

#define BLOCK 64 /* ChaCha20's block: 4 normals */

double gdml_dp_privatize(gdml_dp *d, float *x, size_t n)
{
    double sq = 0;
    for (size_t i = 0; i < n; i++)
        sq += (double)x[i] * x[i];
    double norm = sqrt(sq);
    double scale = norm > d->cfg.clip ? d->cfg.clip / norm : 1.0;
    double std = d->cfg.noise_multiplier * d->cfg.clip;
    unsigned char nonce[crypto_stream_chacha20_NONCEBYTES] = {0};
    for (size_t i = 0; i < sizeof nonce; i++)
        nonce[i] = (unsigned char)(d->calls >> (8 * i));
    d->calls++;
    /* Box-Muller on pairs of uniforms, a block of key stream at a time
     * (block counter ic continues the stream of this call's nonce). */
    static const unsigned char zero[BLOCK];
    unsigned char ks[BLOCK];
    uint64_t ic = 0;
    for (size_t i = 0; i < n; i += 4) {
        crypto_stream_chacha20_xor_ic(ks, zero, BLOCK, nonce, ic++, d->key);
        for (size_t j = 0; j < 4 && i + j < n; j += 2) {
            double r = sqrt(-2.0 * log(uniform(ks + 16 * j)));
            double t = 2.0 * M_PI * uniform(ks + 16 * j + 8);
            x[i + j] = (float)(x[i + j] * scale + std * r * cos(t));
            if (i + j + 1 < n)
                x[i + j + 1] = (float)(x[i + j + 1] * scale + std * r * sin(t));
        }
    }
    sodium_memzero(ks, sizeof ks);
    return norm;
}

double gdml_dp_epsilon(const gdml_dp_config *cfg, uint64_t releases)
{
    return gdml_rdp_epsilon(1.0, cfg->noise_multiplier, releases, cfg->delta, GDML_RDP_BALLE2020,
                            NULL);
}

bool gdml_dp_release_allowed(const gdml_dp_config *cfg, uint64_t releases)
{
    return cfg->epsilon_limit <= 0 || gdml_dp_epsilon(cfg, releases + 1) <= cfg->epsilon_limit;
}

uint64_t gdml_dp_max_releases(const gdml_dp_config *cfg, uint64_t cap)
{
    if (cfg->epsilon_limit <= 0)
        return cap;
    return gdml_rdp_max_steps(1.0, cfg->noise_multiplier, cfg->delta, cfg->epsilon_limit, cap);
}

double gdml_dp_noise_for(const gdml_dp_config *cfg, uint64_t releases)
{
    gdml_dp_config c = *cfg;
    double lo = 1e-3, hi = 1e6; /* epsilon falls as the noise grows */
    for (int i = 0; i < 100 && hi / lo > 1.0001; i++) {
        c.noise_multiplier = sqrt(lo * hi);
        if (gdml_dp_epsilon(&c, releases) <= cfg->epsilon_limit)
            hi = c.noise_multiplier;
        else
            lo = c.noise_multiplier;
    }
    double p = pow(10.0, floor(log10(hi)) - 2);
    return ceil(hi / p) * p;
}
