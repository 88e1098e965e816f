/*
 * dataset.h - a labelled data set in memory, as the models consume it:
 * n rows of dim float features (IDX pixels scaled to [0, 1]; CSV and LIBSVM
 * values as they are, textdata.h), and a class label per row.
 *
 * Rows are held one of two ways: dense (x, n x dim) for the dense models,
 * or compressed sparse rows (ptr, idx, val) for the sparse ones, so that a
 * million features cost only the entries a row has. gdml_dataset_densify
 * and gdml_dataset_sparsify turn one into the other.
 */
#ifndef GDML_DATASET_H
#define GDML_DATASET_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * Compressed sparse rows: row i's entries are idx[k], val[k] for k in
 * [ptr[i], ptr[i + 1]), in any order of idx within a row. A view of rows
 * lo..hi of a larger set is the same arrays with ptr + lo.
 */
typedef struct gdml_csr {
    const size_t *ptr;
    const uint32_t *idx;
    const float *val;
} gdml_csr;

typedef struct gdml_dataset {
    size_t n, dim;
    unsigned classes; /* 1 + the largest label */
    float *x;         /* dense: n * dim, row-major; NULL when sparse */
    /* Sparse (x == NULL): the rows as compressed sparse rows, ptr[0] = 0. */
    size_t *ptr;   /* n + 1 */
    uint32_t *idx; /* ptr[n], each below dim */
    float *val;    /* ptr[n] */
    uint8_t *y;    /* n */
} gdml_dataset;

/* True if ds holds its rows as compressed sparse rows. */
static inline bool gdml_dataset_sparse(const gdml_dataset *ds)
{
    return ds->ptr != NULL;
}

/* The rows of a sparse data set, as a view. */
static inline gdml_csr gdml_dataset_csr(const gdml_dataset *ds)
{
    return (gdml_csr){.ptr = ds->ptr, .idx = ds->idx, .val = ds->val};
}

/*
 * Turns a sparse data set into dense rows in place (a dense one is left as
 * it is). GDML_ERR_NOMEM with e saying how many bytes n x dim would take,
 * and that a sparse model is the way to train on such data.
 */
gdml_err gdml_dataset_densify(gdml_dataset *ds, gdml_errmsg *e);

/* Turns a dense data set into sparse rows of its non-zero entries, in place. GDML_ERR_NOMEM. */
gdml_err gdml_dataset_sparsify(gdml_dataset *ds, gdml_errmsg *e);

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
