/*
 * split.h - assigning a training set to regions (data centers), IID or with
 * Dirichlet label skew, deterministically from a seed, and writing each
 * region's part as its own IDX files so that a region only ever sees its part.
 */
#ifndef GDML_SPLIT_H
#define GDML_SPLIT_H

#include "names.h"
#include "err.h"
#include "idx.h"
#include "textdata.h"

#include <stddef.h>
#include <stdint.h>

typedef enum gdml_split_mode {
    GDML_SPLIT_IID = 0,
    GDML_SPLIT_DIRICHLET,
} gdml_split_mode;

/* What one region received. */
typedef struct gdml_split_part {
    char name[GDML_NAME_MAX];
    uint64_t samples;
    uint64_t per_class[256];
    uint64_t raw_bytes;  /* images + labels IDX files, uncompressed */
    uint64_t gzip_bytes; /* the same files gzip-compressed (level 6) */
} gdml_split_part;

/*
 * Assigns each of n samples (labels[i] < classes) to one of regions regions:
 * region_of[i]. IID: a shuffled round-robin, so sizes differ by at most one.
 * Dirichlet: for each class, proportions over regions ~ Dir(alpha); smaller
 * alpha, stronger skew. Every region gets at least min(10, n / regions)
 * samples (draws are repeated, up to 1000 times, until it does). Same
 * arguments, same result. Returns GDML_ERR_INVALID for regions == 0, a label
 * >= classes, alpha <= 0, or a split that cannot give every region samples.
 */
gdml_err gdml_split_assign(const uint8_t *labels, size_t n, unsigned classes, unsigned regions,
                           gdml_split_mode mode, double alpha, uint64_t seed, uint32_t *region_of,
                           gdml_errmsg *e);

/*
 * Writes region r's samples as dir/<name>/train-images-idx3-ubyte and
 * dir/<name>/train-labels-idx1-ubyte (uncompressed) for every region, and
 * fills parts[r] (if gzip is non-zero also gzip_bytes, which costs a
 * compression pass). images is n x rows x cols, labels n.
 */
gdml_err gdml_split_write(const gdml_idx *images, const gdml_idx *labels, const uint32_t *region_of,
                          char (*names)[GDML_NAME_MAX], unsigned regions, const char *dir, int gzip,
                          gdml_split_part *parts, gdml_errmsg *e);

/*
 * The whole split, from files: reads an IDX training set (images n x rows x
 * cols and labels n, plain or .gz), assigns it with gdml_split_assign
 * (classes: 1 + the largest label) and writes each region's part under dir
 * with gdml_split_write, gzip sizes included. *n_samples gets n. Returns
 * GDML_ERR_FORMAT naming both files if they are not images and labels of
 * one set, or the errors of the steps.
 */
gdml_err gdml_split_files(const char *images_path, const char *labels_path,
                          char (*names)[GDML_NAME_MAX], unsigned regions, gdml_split_mode mode,
                          double alpha, uint64_t seed, const char *dir, gdml_split_part *parts,
                          size_t *n_samples, gdml_errmsg *e);

/*
 * The whole split of a CSV or LIBSVM file (gdml_text_rows_read with opt):
 * rows are assigned on their labels as gdml_split_files assigns samples, and
 * each region's rows are written as they were read (a CSV header first) to
 * dir/<name>/<gdml_split_text_file_name>. Fills parts, raw and gzip sizes
 * included, and *n_samples. Returns the reader's errors, GDML_ERR_IO or
 * GDML_ERR_NOSPACE naming a file that cannot be written.
 */
gdml_err gdml_split_text_file(const char *path, const gdml_text_options *opt,
                              char (*names)[GDML_NAME_MAX], unsigned regions,
                              gdml_split_mode mode, double alpha, uint64_t seed, const char *dir,
                              gdml_split_part *parts, size_t *n_samples, gdml_errmsg *e);

/* The file a text split writes per region: "train.csv" or "train.svm". */
const char *gdml_split_text_file_name(gdml_data_format format);

/* Parses "iid" or "dirichlet"; returns -1 otherwise. */
int gdml_split_mode_parse(const char *s);

#endif
