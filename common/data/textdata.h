/*
 * textdata.h - training data as users keep it in text: CSV (a label column
 * and numeric features, with a header line or without) and LIBSVM ("label
 * index:value ...", indices from 1), plain or gzip-compressed. Both are read
 * into the gdml_dataset the models train on (LIBSVM stays sparse on
 * request, for the sparse models); features are taken as
 * they are (no scaling), labels must be class numbers 0..255, and -1 is read
 * as class 0 (LIBSVM's binary labels are -1 and +1).
 */
#ifndef GDML_TEXTDATA_H
#define GDML_TEXTDATA_H

#include "dataset.h"
#include "err.h"
#include "lines.h"

#include <stdbool.h>
#include <stddef.h>

typedef enum gdml_data_format {
    GDML_DATA_AUTO = 0, /* from the file's name: gdml_data_format_of */
    GDML_DATA_IDX,
    GDML_DATA_CSV,
    GDML_DATA_LIBSVM,
} gdml_data_format;

typedef enum gdml_csv_header {
    GDML_HEADER_AUTO = 0, /* the first line is a header if a field of it is not a number */
    GDML_HEADER_YES,
    GDML_HEADER_NO,
} gdml_csv_header;

typedef struct gdml_text_options {
    gdml_data_format format; /* CSV or LIBSVM; AUTO: from the name */
    gdml_csv_header header;  /* CSV only */
    int label_column;        /* CSV: the label's column from 0; -1: the last */
    size_t dim;              /* LIBSVM: features per row; 0: the largest index read */
    bool sparse;             /* LIBSVM: keep the rows sparse (gdml_dataset_sparse) */
} gdml_text_options;

/*
 * The format a file's name says: ".csv" is CSV; ".svm", ".libsvm",
 * ".svmlight" and ".txt" are LIBSVM; either with ".gz" after it; anything
 * else is IDX.
 */
gdml_data_format gdml_data_format_of(const char *path);

/* Parses "auto", "idx", "csv" or "libsvm"; returns -1 otherwise. */
int gdml_data_format_parse(const char *s);

/* Parses "auto", "yes" or "no"; returns -1 otherwise. */
int gdml_csv_header_parse(const char *s);

/*
 * Loads a CSV or LIBSVM file into out, keeping only the data rows i with
 * i % shard_count == shard_index (use 0, 1 for all). Blank lines and, in
 * LIBSVM, "#" comments are skipped. Returns GDML_ERR_IO if the file cannot
 * be opened, GDML_ERR_FORMAT naming path:line for a malformed row (a field
 * that is not a finite number, a row of another width than the first, a
 * label that is not a class number, a LIBSVM index below 1 or above
 * opt->dim) or an empty shard.
 */
gdml_err gdml_dataset_load_text(const char *path, const gdml_text_options *opt,
                                size_t shard_index, size_t shard_count, gdml_dataset *out,
                                gdml_errmsg *e);

/*
 * A text file's rows as gdml-split needs them: the header line (CSV, or
 * NULL), each data row's text and its class label. Everything is owned by
 * the struct; release with gdml_text_rows_fini.
 */
typedef struct gdml_text_rows {
    gdml_data_format format;
    char *header;
    char **rows;
    uint8_t *labels;
    size_t n;
    unsigned classes; /* 1 + the largest label */
} gdml_text_rows;

/*
 * Reads every data row of path and its label (the rest of the row is not
 * parsed). Errors as gdml_dataset_load_text's, for the label.
 */
gdml_err gdml_text_rows_read(const char *path, const gdml_text_options *opt, gdml_text_rows *out,
                             gdml_errmsg *e);

/* Frees rows' storage and zeroes it. Safe on a zeroed struct. */
void gdml_text_rows_fini(gdml_text_rows *rows);

#endif
