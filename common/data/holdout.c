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

/* Sizes the sparse rows of h for the k rows of ds that held marks. */
static bool alloc_sparse(const gdml_dataset *ds, const uint8_t *held, size_t k, gdml_dataset *h)
{
    size_t entries = 0;
    for (size_t i = 0; i < ds->n; i++)
        if (held[i])
            entries += ds->ptr[i + 1] - ds->ptr[i];
    h->ptr = malloc((k + 1) * sizeof *h->ptr);
    h->idx = malloc((entries ? entries : 1) * sizeof *h->idx);
    h->val = malloc((entries ? entries : 1) * sizeof *h->val);
    return h->ptr && h->idx && h->val;
}

/* Moves the held sparse rows of ds into h and compacts ds to the rest; returns the rows kept. */
static size_t move_sparse(gdml_dataset *ds, const uint8_t *held, gdml_dataset *h)
{
    size_t kept = 0, at = 0; /* ds's entries kept so far */
    h->ptr[0] = 0;
    for (size_t i = 0; i < ds->n; i++) {
        size_t lo = ds->ptr[i], len = ds->ptr[i + 1] - lo;
        if (held[i]) {
            size_t to = h->ptr[h->n];
            memcpy(h->idx + to, ds->idx + lo, len * sizeof *h->idx);
            memcpy(h->val + to, ds->val + lo, len * sizeof *h->val);
            h->ptr[h->n + 1] = to + len;
            h->y[h->n++] = ds->y[i];
        } else {
            /* Kept entries move down only: at <= lo, so nothing unread is overwritten. */
            memmove(ds->idx + at, ds->idx + lo, len * sizeof *ds->idx);
            memmove(ds->val + at, ds->val + lo, len * sizeof *ds->val);
            ds->ptr[kept] = at; /* ptr[kept] <= ptr[i]: i's own start is read already */
            at += len;
            ds->y[kept++] = ds->y[i];
        }
    }
    ds->ptr[kept] = at;
    return kept;
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
    h.y = malloc(k);
    if (held && h.y) {
        gdml_rng rng;
        gdml_rng_seed(&rng, seed ^ HOLDOUT_STREAM);
        for (size_t j = ds->n - k; j < ds->n; j++) { /* Floyd: k distinct rows */
            size_t t = (size_t)gdml_rng_below(&rng, (uint64_t)j + 1);
            held[held[t] ? j : t] = 1;
        }
    }
    bool room = held && h.y;
    if (room && gdml_dataset_sparse(ds))
        room = alloc_sparse(ds, held, k, &h);
    else if (room)
        room = (h.x = malloc(k * ds->dim * sizeof(float))) != NULL;
    if (!room) {
        free(held);
        gdml_dataset_fini(&h);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory holding out %zu rows", k);
    }
    size_t kept = 0;
    if (gdml_dataset_sparse(ds)) {
        kept = move_sparse(ds, held, &h);
    } else {
        size_t row_bytes = ds->dim * sizeof(float);
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
    }
    free(held);
    ds->n = kept;
    *out = h;
    return GDML_OK;
}
