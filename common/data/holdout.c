/*
 * holdout.c - a worker's validation rows (holdout.h).
 *
 * The rows are drawn with Floyd's algorithm (k distinct rows of n in k
 * draws, a byte per row of scratch) from a generator of their own, seeded
 * from the caller's seed mixed with a constant, so the batch order that the
 * same seed drives elsewhere is not disturbed.
 */
#include "holdout.h"

#include "rng.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* "holdout" in ASCII: this stream differs from any other drawn from the seed. */
#define HOLDOUT_STREAM 0x686f6c646f7574ULL

size_t gdml_holdout_count(size_t n, double fraction, size_t max_rows)
{
    if (!(fraction > 0))
        return 0;
    size_t k = (size_t)floor(fraction * (double)n);
    return k < max_rows ? k : max_rows;
}

gdml_err gdml_holdout_take(gdml_dataset *ds, double fraction, size_t max_rows, uint64_t seed,
                           gdml_dataset *out, gdml_errmsg *e)
{
    if (!(fraction >= 0 && fraction <= GDML_HOLDOUT_MAX_FRACTION))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "a holdout of %g of the shard; give 0 (none) to %g", fraction,
                               GDML_HOLDOUT_MAX_FRACTION);
    size_t k = gdml_holdout_count(ds->n, fraction, max_rows);
    gdml_dataset h = {.dim = ds->dim, .classes = ds->classes};
    if (k == 0) {
        *out = h;
        return GDML_OK;
    }
    uint8_t *held = calloc(ds->n, 1);
    h.x = malloc(k * ds->dim * sizeof(float));
    h.y = malloc(k);
    if (!held || !h.x || !h.y) {
        free(held);
        gdml_dataset_fini(&h);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory holding out %zu rows", k);
    }
    gdml_rng rng;
    gdml_rng_seed(&rng, seed ^ HOLDOUT_STREAM);
    for (size_t j = ds->n - k; j < ds->n; j++) { /* Floyd: k distinct rows */
        size_t t = (size_t)gdml_rng_below(&rng, (uint64_t)j + 1);
        held[held[t] ? j : t] = 1;
    }
    size_t row_bytes = ds->dim * sizeof(float), kept = 0;
    for (size_t i = 0; i < ds->n; i++) {
        const float *x = ds->x + i * ds->dim;
        if (held[i]) {
            memcpy(h.x + h.n * ds->dim, x, row_bytes);
            h.y[h.n++] = ds->y[i];
        } else {
            memmove(ds->x + kept * ds->dim, x, row_bytes);
            ds->y[kept++] = ds->y[i];
        }
    }
    free(held);
    ds->n = kept;
    *out = h;
    return GDML_OK;
}
