/*
 * textdata.c - CSV and LIBSVM rows into a dense data set. Both readers walk
 * the file once through the line reader: CSV rows go straight into the
 * feature matrix, LIBSVM rows into (index, value) pairs that become dense
 * rows at the end, once the width is known.
 */
#include "textdata.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- names ---- */

static bool ends_with(const char *s, size_t len, const char *suffix)
{
    size_t n = strlen(suffix);
    return len >= n && strncmp(s + len - n, suffix, n) == 0;
}

gdml_data_format gdml_data_format_of(const char *path)
{
    size_t len = strlen(path);
    if (ends_with(path, len, ".gz"))
        len -= 3;
    if (ends_with(path, len, ".csv"))
        return GDML_DATA_CSV;
    static const char *const svm[] = {".svm", ".libsvm", ".svmlight", ".txt"};
    for (size_t i = 0; i < sizeof svm / sizeof svm[0]; i++)
        if (ends_with(path, len, svm[i]))
            return GDML_DATA_LIBSVM;
    return GDML_DATA_IDX;
}

int gdml_data_format_parse(const char *s)
{
    static const char *const names[] = {"auto", "idx", "csv", "libsvm"};
    for (int i = 0; i < 4; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

int gdml_csv_header_parse(const char *s)
{
    static const char *const names[] = {"auto", "yes", "no"};
    for (int i = 0; i < 3; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

/* ---- fields ---- */

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n > 0 && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

/* A finite number that is the whole of s. */
static bool parse_float(const char *s, float *out)
{
    char *end;
    errno = 0;
    float v = strtof(s, &end);
    if (end == s || *end || !isfinite(v) || (errno == ERANGE && fabsf(v) > 1.0f))
        return false;
    *out = v;
    return true;
}

/* A class number, 0..255 or -1 (read as 0), written as an integer or "3.0". */
static bool parse_label(const char *s, int *out)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || v != floor(v) || v < -1 || v > 255)
        return false;
    *out = (int)v;
    return true;
}

/* Grows *p to hold need elements of size elem; false if it cannot. */
static bool grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return true;
    size_t c = *cap ? *cap : 1024;
    while (c < need)
        c *= 2;
    if (c > SIZE_MAX / elem)
        return false;
    void *q = realloc(*p, c * elem);
    if (!q)
        return false;
    *p = q;
    *cap = c;
    return true;
}

typedef struct fields {
    char **v;
    size_t n, cap;
} fields;

/* Cuts line at its commas, in place, into trimmed fields. */
static bool split_csv(char *line, fields *f)
{
    f->n = 0;
    for (char *s = line;;) {
        char *comma = strchr(s, ',');
        if (comma)
            *comma = '\0';
        if (!grow((void **)&f->v, &f->cap, f->n + 1, sizeof *f->v))
            return false;
        f->v[f->n++] = trim(s);
        if (!comma)
            return true;
        s = comma + 1;
    }
}

/* ---- the walk over a file's data rows, shared by both formats ---- */

typedef struct walk {
    const char *path;
    const gdml_text_options *opt;
    gdml_data_format format;
    gdml_lines *lines;
    fields f;
    size_t width;      /* CSV: fields per row, from the header or the first row */
    size_t label_col;  /* CSV */
    char *header;      /* CSV: the header line's text, if it has one */
    size_t row;        /* data rows seen */
    bool seen_minus_one, seen_zero;
} walk;

static gdml_err walk_open(walk *w, const char *path, const gdml_text_options *opt, gdml_errmsg *e)
{
    memset(w, 0, sizeof *w);
    w->path = path;
    w->opt = opt;
    w->format = opt->format == GDML_DATA_AUTO ? gdml_data_format_of(path) : opt->format;
    if (w->format != GDML_DATA_CSV && w->format != GDML_DATA_LIBSVM)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "'%s' is not named as CSV (.csv) or LIBSVM (.svm, .libsvm, "
                               ".txt): set [data] format = csv or libsvm",
                               path);
    return gdml_lines_open(path, &w->lines, e);
}

static void walk_close(walk *w)
{
    gdml_lines_close(&w->lines);
    free(w->f.v);
    free(w->header);
    memset(w, 0, sizeof *w);
}

/* Keeps the label, mapping -1 to 0 and refusing a file that uses both. */
static gdml_err take_label(walk *w, int label, uint8_t *out, gdml_errmsg *e)
{
    if (label == -1)
        w->seen_minus_one = true;
    if (label == 0)
        w->seen_zero = true;
    if (w->seen_minus_one && w->seen_zero)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "%s:%zu: labels -1 and 0 both appear; -1 is read as class 0 "
                               "(binary -1/+1 labels), so use one or the other",
                               w->path, gdml_lines_number(w->lines));
    *out = (uint8_t)(label < 0 ? 0 : label);
    return GDML_OK;
}

/* Sets up CSV columns from the first non-blank line; true if it is a header. */
static gdml_err csv_first_line(walk *w, char *line, bool *is_header, gdml_errmsg *e)
{
    char *copy = strdup(line);
    if (!copy || !split_csv(line, &w->f)) {
        free(copy);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory", w->path);
    }
    w->width = w->f.n;
    int col = w->opt->label_column;
    if (w->width < 2 || col >= (int)w->width || col < -1) {
        free(copy);
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "%s:%zu: %zu fields, so no label column %d and features beside it: "
                               "a CSV row is a label and at least one feature ([data] "
                               "label_column counts from 0; -1 is the last)",
                               w->path, gdml_lines_number(w->lines), w->width, col);
    }
    w->label_col = col < 0 ? w->width - 1 : (size_t)col;
    bool numeric = true;
    float v;
    for (size_t i = 0; i < w->f.n && numeric; i++)
        numeric = parse_float(w->f.v[i], &v);
    *is_header = w->opt->header == GDML_HEADER_YES ||
                 (w->opt->header == GDML_HEADER_AUTO && !numeric);
    if (*is_header)
        w->header = copy;
    else
        free(copy);
    return GDML_OK;
}

/*
 * The next data row: *line is NULL at the end. CSV rows come back split into
 * w->f (checked for width), LIBSVM rows as they are.
 */
static gdml_err next_row(walk *w, char **line, gdml_errmsg *e)
{
    for (;;) {
        size_t len;
        bool more;
        gdml_err err = gdml_lines_next(w->lines, line, &len, &more, e);
        if (err || !more)
            return err;
        char *s = *line;
        while (isspace((unsigned char)*s))
            s++;
        if (!*s || (w->format == GDML_DATA_LIBSVM && *s == '#'))
            continue;
        if (w->format == GDML_DATA_LIBSVM) {
            *line = s;
            w->row++;
            return GDML_OK;
        }
        if (w->width == 0) {
            bool is_header = false;
            if ((err = csv_first_line(w, *line, &is_header, e)))
                return err;
            if (is_header)
                continue;
        } else if (!split_csv(*line, &w->f)) {
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory", w->path);
        }
        if (w->f.n != w->width)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "%s:%zu: %zu fields, but the %s has %zu: every row has the "
                                   "label and the same features",
                                   w->path, gdml_lines_number(w->lines), w->f.n,
                                   w->header ? "header" : "first row", w->width);
        w->row++;
        return GDML_OK;
    }
}

static gdml_err csv_label(walk *w, uint8_t *label, gdml_errmsg *e)
{
    int v;
    if (!parse_label(w->f.v[w->label_col], &v))
        return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                               "%s:%zu: label '%.40s' (column %zu) is not a class number 0..255 "
                               "(or -1)",
                               w->path, gdml_lines_number(w->lines), w->f.v[w->label_col],
                               w->label_col);
    return take_label(w, v, label, e);
}

/* The LIBSVM label: the row's first token; *rest gets what follows it. */
static gdml_err svm_label(walk *w, char *line, uint8_t *label, char **rest, gdml_errmsg *e)
{
    char *end = line;
    while (*end && !isspace((unsigned char)*end))
        end++;
    char saved = *end;
    *end = '\0';
    int v;
    bool ok = parse_label(line, &v);
    if (!ok) {
        gdml_err err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                       "%s:%zu: label '%.40s' is not a class number 0..255 (or "
                                       "-1): a LIBSVM row is 'label index:value ...'",
                                       w->path, gdml_lines_number(w->lines), line);
        *end = saved;
        return err;
    }
    *end = saved;
    *rest = end;
    return take_label(w, v, label, e);
}

/* ---- CSV and LIBSVM into a data set ---- */

typedef struct sparse {
    uint32_t *index;
    float *value;
    size_t nnz, cap_index, cap_value;
    size_t *row_end; /* entries of row r end at row_end[r] */
    size_t cap_rows;
    size_t max_index;
} sparse;

/* Parses "index:value ..." of one LIBSVM row into s. */
static gdml_err svm_features(walk *w, char *rest, sparse *s, gdml_errmsg *e)
{
    size_t lineno = gdml_lines_number(w->lines);
    char *save = NULL;
    for (char *tok = strtok_r(rest, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
        if (*tok == '#')
            break; /* a comment to the end of the line */
        char *colon = strchr(tok, ':');
        if (colon && strncmp(tok, "qid:", 4) == 0)
            continue; /* ranking data's query id: not a feature */
        char *end;
        errno = 0;
        unsigned long long index = colon ? strtoull(tok, &end, 10) : 0;
        float value;
        if (!colon || end != colon || *tok == '-' || errno || !parse_float(colon + 1, &value))
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "%s:%zu: '%.40s' is not index:value (an index from 1, a "
                                   "finite value)",
                                   w->path, lineno, tok);
        if (index < 1 || (w->opt->dim && index > w->opt->dim) || index > UINT32_MAX)
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "%s:%zu: feature index %llu is outside 1..%zu%s", w->path,
                                   lineno, index, w->opt->dim ? w->opt->dim : (size_t)UINT32_MAX,
                                   w->opt->dim ? " ([model] inputs): raise inputs to the data's "
                                                 "largest index"
                                               : "");
        if (!grow((void **)&s->index, &s->cap_index, s->nnz + 1, sizeof *s->index) ||
            !grow((void **)&s->value, &s->cap_value, s->nnz + 1, sizeof *s->value))
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "%s:%zu: out of memory", w->path, lineno);
        s->index[s->nnz] = (uint32_t)(index - 1);
        s->value[s->nnz++] = value;
        if (index > s->max_index)
            s->max_index = index;
    }
    return GDML_OK;
}

typedef struct rows_out {
    float *x;
    uint8_t *y;
    size_t n, cap_x, cap_y, dim;
    unsigned max_label;
} rows_out;

static bool keep(const walk *w, size_t shard_index, size_t shard_count)
{
    return (w->row - 1) % shard_count == shard_index;
}

static gdml_err load_rows(walk *w, size_t shard_index, size_t shard_count, rows_out *o, sparse *s,
                          gdml_errmsg *e)
{
    char *line;
    gdml_err err;
    while (!(err = next_row(w, &line, e)) && line) {
        if (!keep(w, shard_index, shard_count))
            continue;
        uint8_t label;
        if (!grow((void **)&o->y, &o->cap_y, o->n + 1, 1))
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory", w->path);
        if (w->format == GDML_DATA_CSV) {
            o->dim = w->width - 1;
            if ((err = csv_label(w, &label, e)))
                return err;
            if (!grow((void **)&o->x, &o->cap_x, (o->n + 1) * o->dim, sizeof *o->x))
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory for %zu rows",
                                       w->path, o->n + 1);
            float *dst = o->x + o->n * o->dim;
            for (size_t c = 0; c < w->width; c++) {
                if (c == w->label_col)
                    continue;
                if (!parse_float(w->f.v[c], dst++))
                    return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                           "%s:%zu: field %zu, '%.40s', is not a finite number",
                                           w->path, gdml_lines_number(w->lines), c + 1,
                                           w->f.v[c]);
            }
        } else {
            char *rest;
            if ((err = svm_label(w, line, &label, &rest, e)) || (err = svm_features(w, rest, s, e)))
                return err;
            if (!grow((void **)&s->row_end, &s->cap_rows, o->n + 1, sizeof *s->row_end))
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory", w->path);
            s->row_end[o->n] = s->nnz;
        }
        o->y[o->n++] = label;
        if (label > o->max_label)
            o->max_label = label;
    }
    return err;
}

/* LIBSVM's pairs as the sparse rows of out, which takes s's arrays. */
static gdml_err keep_sparse(const walk *w, sparse *s, rows_out *o, gdml_dataset *out,
                            gdml_errmsg *e)
{
    o->dim = w->opt->dim ? w->opt->dim : s->max_index;
    if (o->dim == 0)
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s': no row has a feature", w->path);
    size_t *ptr = malloc((o->n + 1) * sizeof *ptr);
    if (!ptr)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory for %zu rows", w->path,
                               o->n);
    ptr[0] = 0;
    memcpy(ptr + 1, s->row_end, o->n * sizeof *ptr);
    out->ptr = ptr;
    out->idx = s->index;
    out->val = s->value;
    s->index = NULL;
    s->value = NULL;
    return GDML_OK;
}

gdml_err gdml_dataset_load_text(const char *path, const gdml_text_options *opt,
                                size_t shard_index, size_t shard_count, gdml_dataset *out,
                                gdml_errmsg *e)
{
    if (shard_count == 0 || shard_index >= shard_count)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "shard index %zu is not below shard count %zu for '%s'", shard_index,
                               shard_count, path);
    walk w;
    rows_out o = {0};
    sparse s = {0};
    gdml_err err = walk_open(&w, path, opt, e);
    if (!err)
        err = load_rows(&w, shard_index, shard_count, &o, &s, e);
    if (!err && o.n == 0)
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT,
                              "'%s': shard %zu of %zu is empty (the file holds %zu data rows)",
                              path, shard_index, shard_count, w.row);
    if (!err && w.format == GDML_DATA_LIBSVM) {
        free(o.x);
        o.x = NULL;
        err = keep_sparse(&w, &s, &o, out, e);
    }
    if (!err) {
        out->n = o.n;
        out->dim = o.dim;
        out->classes = o.max_label + 1;
        out->x = o.x;
        out->y = o.y;
        o.x = NULL;
        o.y = NULL;
    }
    /* A dense model reads LIBSVM as the rows it spells out. */
    if (!err && w.format == GDML_DATA_LIBSVM && !opt->sparse &&
        (err = gdml_dataset_densify(out, e))) {
        gdml_errmsg_prefix(e, "'%s': ", path);
        gdml_dataset_fini(out);
    }
    free(o.x);
    free(o.y);
    free(s.index);
    free(s.value);
    free(s.row_end);
    walk_close(&w);
    return err;
}

/* ---- rows for a split ---- */

gdml_err gdml_text_rows_read(const char *path, const gdml_text_options *opt, gdml_text_rows *out,
                             gdml_errmsg *e)
{
    walk w;
    gdml_text_rows t = {0};
    size_t cap_rows = 0, cap_labels = 0;
    gdml_err err = walk_open(&w, path, opt, e);
    char *line;
    while (!err && !(err = next_row(&w, &line, e)) && line) {
        /* Keep the text before a CSV row is split: the split writes it as it was. */
        char *text = NULL;
        uint8_t label = 0;
        if (w.format == GDML_DATA_LIBSVM) {
            char *rest;
            if (!(text = strdup(line)))
                err = GDML_ERR_NOMEM;
            else
                err = svm_label(&w, line, &label, &rest, e);
        } else {
            size_t len = 0;
            for (size_t c = 0; c < w.f.n; c++)
                len += strlen(w.f.v[c]) + 1;
            if ((text = malloc(len))) {
                char *p = text;
                for (size_t c = 0; c < w.f.n; c++)
                    p += sprintf(p, "%s%s", c ? "," : "", w.f.v[c]);
                err = csv_label(&w, &label, e);
            } else {
                err = GDML_ERR_NOMEM;
            }
        }
        if (!err && (!grow((void **)&t.rows, &cap_rows, t.n + 1, sizeof *t.rows) ||
                     !grow((void **)&t.labels, &cap_labels, t.n + 1, 1)))
            err = GDML_ERR_NOMEM;
        if (err) {
            free(text);
            if (err == GDML_ERR_NOMEM)
                gdml_errmsg_set(e, err, "'%s': out of memory at row %zu", path, w.row);
            break;
        }
        t.rows[t.n] = text;
        t.labels[t.n++] = label;
        if (label + 1u > t.classes)
            t.classes = label + 1u;
    }
    if (!err && t.n == 0)
        err = gdml_errmsg_set(e, GDML_ERR_FORMAT, "'%s' holds no data rows", path);
    if (!err) {
        t.format = w.format;
        t.header = w.header;
        w.header = NULL;
        *out = t;
    } else {
        gdml_text_rows_fini(&t);
    }
    walk_close(&w);
    return err;
}

void gdml_text_rows_fini(gdml_text_rows *rows)
{
    if (!rows)
        return;
    for (size_t i = 0; i < rows->n; i++)
        free(rows->rows[i]);
    free(rows->rows);
    free(rows->labels);
    free(rows->header);
    memset(rows, 0, sizeof *rows);
}
