/*
 * lines.c - a line reader over zlib's gz* interface: one buffer that grows
 * to the longest line, refilled with gzread, lines cut in place.
 */
#include "lines.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

enum { FIRST_CAP = 1 << 16, MAX_LINE = 1 << 30 };

struct gdml_lines {
    gzFile f;
    char *path;
    char *buf;
    size_t cap, start, end; /* buf[start..end) is read and not yet returned */
    size_t number;
    bool eof;
};

gdml_err gdml_lines_open(const char *path, gdml_lines **out, gdml_errmsg *e)
{
    gdml_lines *r = calloc(1, sizeof *r);
    if (!r || !(r->path = strdup(path)) || !(r->buf = malloc(FIRST_CAP))) {
        gdml_lines_close(&r);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "'%s': out of memory", path);
    }
    r->cap = FIRST_CAP;
    errno = 0;
    r->f = gzopen(path, "rb");
    if (!r->f) {
        int err = errno;
        gdml_lines_close(&r);
        return gdml_errmsg_set(e, GDML_ERR_IO, "cannot open '%s': %s", path,
                               err ? strerror(err) : "out of memory");
    }
    gzbuffer(r->f, 1 << 17);
    *out = r;
    return GDML_OK;
}

/* Moves the unread bytes to the front, grows a full buffer, reads more. */
static gdml_err refill(gdml_lines *r, gdml_errmsg *e)
{
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end + 1 >= r->cap) { /* one byte stays free for the last line's NUL */
        if (r->cap >= MAX_LINE)
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "%s:%zu: a line longer than %d bytes",
                                   r->path, r->number + 1, MAX_LINE);
        char *bigger = realloc(r->buf, r->cap * 2);
        if (!bigger)
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "%s:%zu: out of memory for a line of %zu bytes",
                                   r->path, r->number + 1, r->cap * 2);
        r->buf = bigger;
        r->cap *= 2;
    }
    int got = gzread(r->f, r->buf + r->end, (unsigned)(r->cap - r->end - 1));
    if (got < 0) {
        int code;
        const char *msg = gzerror(r->f, &code);
        return gdml_errmsg_set(e, GDML_ERR_FORMAT, "%s:%zu: corrupt gzip data (%s)", r->path,
                               r->number + 1, msg);
    }
    if (got == 0)
        r->eof = true;
    r->end += (size_t)got;
    return GDML_OK;
}

gdml_err gdml_lines_next(gdml_lines *r, char **line, size_t *len, bool *more, gdml_errmsg *e)
{
    size_t scanned = r->start;
    for (;;) {
        char *nl = memchr(r->buf + scanned, '\n', r->end - scanned);
        size_t stop;
        if (nl) {
            stop = (size_t)(nl - r->buf);
        } else if (r->eof) {
            if (r->start == r->end) {
                *line = NULL;
                *len = 0;
                *more = false;
                return GDML_OK;
            }
            stop = r->end; /* a last line without its newline */
        } else {
            size_t offset = scanned - r->start;
            gdml_err err = refill(r, e);
            if (err)
                return err;
            scanned = r->start + offset;
            continue;
        }
        char *s = r->buf + r->start;
        size_t n = stop - r->start;
        r->number++;
        r->start = stop < r->end ? stop + 1 : stop;
        if (n > 0 && s[n - 1] == '\r')
            n--;
        if (memchr(s, '\0', n))
            return gdml_errmsg_set(e, GDML_ERR_FORMAT,
                                   "%s:%zu: a NUL byte: this is not a text file", r->path,
                                   r->number);
        s[n] = '\0'; /* over the '\n' or '\r', or at end < cap */
        *line = s;
        *len = n;
        *more = true;
        return GDML_OK;
    }
}

size_t gdml_lines_number(const gdml_lines *r)
{
    return r->number;
}

const char *gdml_lines_path(const gdml_lines *r)
{
    return r->path;
}

void gdml_lines_close(gdml_lines **r)
{
    if (!r || !*r)
        return;
    if ((*r)->f)
        gzclose((*r)->f);
    free((*r)->buf);
    free((*r)->path);
    free(*r);
    *r = NULL;
}
