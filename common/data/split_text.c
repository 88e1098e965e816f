/*
 * split_text.c - gdml-split for CSV and LIBSVM files: rows are assigned to
 * regions as IDX samples are (gdml_split_assign, on their labels) and each
 * region's rows are written as they were read, a CSV header first, into
 * dir/<region>/train.csv or train.svm.
 */
#include "split.h"

#include "textdata.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* A part's file as it is written, and the gzip size of the same bytes. */
typedef struct part_sink {
    FILE *f;
    z_stream z;
    uint64_t raw, gzip;
    bool failed;
} part_sink;

/* Deflates len bytes (Z_FINISH: and ends the stream), counting the output. */
static void sink_deflate(part_sink *s, const char *bytes, size_t len, int mode)
{
    uint8_t out[16384];
    s->z.next_in = (Bytef *)bytes;
    s->z.avail_in = (uInt)len;
    do {
        s->z.next_out = out;
        s->z.avail_out = sizeof out;
        deflate(&s->z, mode);
        s->gzip += sizeof out - s->z.avail_out;
    } while (s->z.avail_out == 0);
}

/* Writes one line. */
static void sink_put(part_sink *s, const char *text)
{
    size_t len = strlen(text);
    if (fwrite(text, 1, len, s->f) != len || fputc('\n', s->f) == EOF)
        s->failed = true;
    s->raw += len + 1;
    sink_deflate(s, text, len, Z_NO_FLUSH);
    sink_deflate(s, "\n", 1, Z_NO_FLUSH);
}

static gdml_err write_part(const gdml_text_rows *t, const uint32_t *region_of, uint32_t r,
                           const char *dir, const char *name, gdml_split_part *part,
                           gdml_errmsg *e)
{
    char path[GDML_PATH_MAX + 2 * GDML_NAME_MAX];
    const char *file = gdml_split_text_file_name(t->format);
    int len = snprintf(path, sizeof path, "%s/%s/%s", dir, name, file);
    if (len < 0 || len >= (int)sizeof path)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "split: path '%s/%s/%s' is too long", dir,
                               name, file);
    path[len - strlen(file) - 1] = '\0'; /* the region's directory first */
    gdml_err err = gdml_mkdir_p(path, e);
    if (err)
        return err;
    path[len - strlen(file) - 1] = '/';
    part_sink s = {0};
    if (deflateInit2(&s.z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "split: zlib cannot start a stream");
    if (!(s.f = fopen(path, "w"))) {
        deflateEnd(&s.z);
        return gdml_errmsg_set(e, GDML_ERR_IO, "split: cannot create '%s': %s", path,
                               strerror(errno));
    }
    memset(part, 0, sizeof *part);
    snprintf(part->name, sizeof part->name, "%s", name);
    if (t->header)
        sink_put(&s, t->header);
    for (size_t i = 0; i < t->n; i++)
        if (region_of[i] == r) {
            sink_put(&s, t->rows[i]);
            part->samples++;
            part->per_class[t->labels[i]]++;
        }
    sink_deflate(&s, "", 0, Z_FINISH);
    deflateEnd(&s.z);
    if (fclose(s.f) != 0 || s.failed)
        return gdml_errmsg_set(e, errno == ENOSPC ? GDML_ERR_NOSPACE : GDML_ERR_IO,
                               "split: cannot write '%s': %s", path, strerror(errno));
    part->raw_bytes = s.raw;
    part->gzip_bytes = s.gzip;
    return GDML_OK;
}

const char *gdml_split_text_file_name(gdml_data_format format)
{
    return format == GDML_DATA_CSV ? "train.csv" : "train.svm";
}

gdml_err gdml_split_text_file(const char *path, const gdml_text_options *opt,
                              char (*names)[GDML_NAME_MAX], unsigned regions,
                              gdml_split_mode mode, double alpha, uint64_t seed, const char *dir,
                              gdml_split_part *parts, size_t *n_samples, gdml_errmsg *e)
{
    for (unsigned r = 0; r < regions; r++)
        if (!gdml_name_ok(names[r]))
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "split: region %u's name is not a valid directory name", r);
    gdml_text_rows t;
    gdml_err err = gdml_text_rows_read(path, opt, &t, e);
    if (err)
        return err;
    uint32_t *region_of = malloc(t.n * sizeof *region_of);
    if (!region_of)
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu rows", t.n);
    else
        err = gdml_split_assign(t.labels, t.n, t.classes, regions, mode, alpha, seed, region_of,
                                e);
    for (unsigned r = 0; !err && r < regions; r++)
        err = write_part(&t, region_of, r, dir, names[r], &parts[r], e);
    if (!err)
        *n_samples = t.n;
    free(region_of);
    gdml_text_rows_fini(&t);
    return err;
}
