/*
 * dataset.h - a labelled data set in memory, as the models consume it:
 * n rows of dim float features (IDX pixels scaled to [0, 1]; CSV and LIBSVM
 * values as they are, textdata.h), and a class label per row.
 */
#ifndef GDML_DATASET_H
#define GDML_DATASET_H

#include "err.h"

#include <stddef.h>
#include <stdint.h>

typedef struct gdml_dataset {
    size_t n, dim;
    unsigned classes; /* 1 + the largest label */
    float *x;         /* n * dim, row-major */
    uint8_t *y;       /* n */
} gdml_dataset;

/*
 * Loads an IDX images file (n x rows x cols) and labels file (n), plain or
 * .gz. Keeps only rows i with i % shard_count == shard_index (use 0, 1 for
 * all). Returns GDML_ERR_FORMAT if the counts differ, the files are not
 * images/labels, or the shard is empty; e names the file.
 */
gdml_err gdml_dataset_load_idx(const char *images, const char *labels, size_t shard_index,
                               size_t shard_count, gdml_dataset *out, gdml_errmsg *e);

/* Frees ds's arrays and zeroes it. Safe on a zeroed dataset. */
void gdml_dataset_fini(gdml_dataset *ds);

#endif
