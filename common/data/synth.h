/*
 * synth.h - synthetic sparse binary-classification data of any size, from a
 * seed, with a known true model: for scale tests of the data path and of
 * sparse models, and to check what accuracy a run reaches against the best
 * any model can.
 *
 * Feature j's true weight is w_j ~ N(0, 1) (drawn from the seed). A row has
 * nnz distinct features, uniform over 1..features, each of value 1 (the shape
 * of click data), so its margin m = sum of their w_j / sqrt(nnz) is about
 * N(0, 1). Its label is 1 if m + noise * N(0, 1) > 0, else 0. The true
 * model's accuracy is the share of rows whose label is the sign of m.
 */
#ifndef GDML_SYNTH_H
#define GDML_SYNTH_H

#include "err.h"

#include <stdint.h>

typedef struct gdml_synth_options {
    uint64_t samples;  /* rows */
    uint64_t features; /* 1..2^32-1 */
    uint32_t nnz;      /* features per row, 1..features */
    uint64_t seed;
    double noise; /* label noise; 0: labels are the true model's */
} gdml_synth_options;

typedef struct gdml_synth_result {
    uint64_t positives;    /* rows labelled 1 */
    double true_accuracy;  /* of the true model on the rows written */
    uint64_t bytes;        /* written, uncompressed */
} gdml_synth_result;

/*
 * Writes the rows as LIBSVM to path (gzip-compressed if it ends in ".gz")
 * and, if model_path is not NULL, the true weights to it, one per line,
 * feature 1 first. Returns GDML_ERR_INVALID for options out of range,
 * GDML_ERR_IO or GDML_ERR_NOSPACE naming a file that cannot be written.
 */
gdml_err gdml_synth_write(const char *path, const char *model_path, const gdml_synth_options *opt,
                          gdml_synth_result *out, gdml_errmsg *e);

/* The true weights of opt->seed: w[0..features). */
gdml_err gdml_synth_weights(const gdml_synth_options *opt, float *w);

#endif
