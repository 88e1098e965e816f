/*
 * store.h - the model-version store: every committed global model, in LMDB.
 *
 * One LMDB environment (a directory) holds, per version, the parameters, the
 * layout string, and a metadata record; a version is written in exactly one
 * write transaction, so a reader sees it whole or not at all and a crash never
 * leaves half a version. Versions only grow. This is the only module that
 * touches LMDB; its error codes become GDML_ERR_STORE with the LMDB text in e.
 *
 * Named databases: "params" (version -> float32[]), "layout" (version -> text),
 * "meta" (version -> record), keys are 8-byte big-endian versions so that
 * LMDB's order is version order. The record format is private to store.c and
 * begins with its own format number.
 */
#ifndef GDML_STORE_H
#define GDML_STORE_H

#include "names.h"
#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GDML_STORE_MAX_REGIONS 64
#define GDML_LAYOUT_MAX 128

typedef struct gdml_store gdml_store;

/* One region's part in a version. */
typedef struct gdml_region_part {
    char name[GDML_NAME_MAX];
    uint64_t seq;     /* sequence number of the region's message merged */
    uint64_t samples; /* weight it was merged with */
} gdml_region_part;

typedef struct gdml_version_meta {
    uint64_t version;        /* 1, 2, ... */
    uint64_t round;          /* coordinator round that produced it */
    int64_t time_ms;         /* commit time, milliseconds since the Unix epoch */
    uint64_t bytes_received; /* coordinator's WAN bytes received up to this version */
    uint64_t bytes_sent;     /* coordinator's WAN bytes sent up to this version */
    double accuracy, loss;   /* on the coordinator's eval set; NaN when not evaluated */
    uint32_t n_regions;
    gdml_region_part regions[GDML_STORE_MAX_REGIONS];
} gdml_version_meta;

/*
 * Opens (creating the directory and files if needed, unless read_only) the
 * store at dir. Returns GDML_ERR_IO if dir cannot be created or opened,
 * GDML_ERR_NOTFOUND if read_only and there is no store there.
 */
gdml_err gdml_store_open(const char *dir, bool read_only, gdml_store **out, gdml_errmsg *e);

/* Closes the store. NULL-safe; clears *s. */
void gdml_store_close(gdml_store **s);

/*
 * Commits one version in one write transaction: meta (meta->version must be
 * greater than the newest stored), layout text, params[0..n). Returns
 * GDML_ERR_EXISTS if meta->version is not newer, GDML_ERR_INVALID for a bad
 * record (too many regions, empty layout), GDML_ERR_STORE if LMDB fails
 * (e.g. the map is full: e says so).
 */
gdml_err gdml_store_commit(gdml_store *s, const gdml_version_meta *meta, const char *layout,
                           const float *params, size_t n, gdml_errmsg *e);

/* The newest version, or GDML_ERR_NOTFOUND when the store is empty. */
gdml_err gdml_store_head(gdml_store *s, uint64_t *version);

/* How many versions the store holds. */
gdml_err gdml_store_count(gdml_store *s, uint64_t *count);

/* Reads one version's metadata. GDML_ERR_NOTFOUND if absent. */
gdml_err gdml_store_meta(gdml_store *s, uint64_t version, gdml_version_meta *out, gdml_errmsg *e);

/*
 * Reads one version's layout and parameters. *params is malloc'd for the
 * caller, who frees it. GDML_ERR_NOTFOUND if absent, GDML_ERR_FORMAT if the
 * stored value is malformed.
 */
gdml_err gdml_store_params(gdml_store *s, uint64_t version, char layout[GDML_LAYOUT_MAX],
                           float **params, size_t *n, gdml_errmsg *e);

/* Called for each version in ascending order; return non-zero to stop. */
typedef int (*gdml_store_visit_fn)(const gdml_version_meta *meta, void *user);

/* Visits every version's metadata in one read transaction. */
gdml_err gdml_store_each(gdml_store *s, gdml_store_visit_fn fn, void *user, gdml_errmsg *e);

#endif
