/*
 * holdout.h - a worker's validation rows: a part of its shard, chosen
 * deterministically from a seed, that it never trains on and scores each
 * model version on (metrics only, docs/protocol.md "Validation figures").
 */
#ifndef GDML_HOLDOUT_H
#define GDML_HOLDOUT_H

#include "dataset.h"
#include "err.h"

#include <stddef.h>
#include <stdint.h>

/* The largest fraction of a shard that may be held out: training rows are
 * never fewer than held-out ones. */
#define GDML_HOLDOUT_MAX_FRACTION 0.5

/*
 * How many of n rows are held out: floor(fraction * n), but at most
 * max_rows (which bounds what scoring costs). fraction in [0, 0.5].
 */
size_t gdml_holdout_count(size_t n, double fraction, size_t max_rows);

/*
 * Moves gdml_holdout_count(ds->n, fraction, max_rows) rows of ds, drawn
 * uniformly from seed, into *out (arrays of its own, which the caller
 * frees with gdml_dataset_fini; a zeroed dataset if none are held out; rows
 * held as ds holds them, dense or sparse), and
 * compacts ds in place to the rest. Both keep the rows' order. The same ds,
 * fraction, max_rows and seed give the same split. Returns GDML_ERR_INVALID
 * for a fraction outside [0, 0.5], GDML_ERR_NOMEM; on error ds is unchanged
 * and *out untouched.
 */
gdml_err gdml_holdout_take(gdml_dataset *ds, double fraction, size_t max_rows, uint64_t seed,
                           gdml_dataset *out, gdml_errmsg *e);

#endif
