/*
 * lines.h - reading a text file line by line, plain or gzip-compressed (zlib
 * reads both alike), with lines of any length and the line number kept for
 * error messages ("train.csv:17: ...").
 */
#ifndef GDML_LINES_H
#define GDML_LINES_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct gdml_lines gdml_lines;

/*
 * Opens path for reading. Returns GDML_ERR_IO (e names path and the reason)
 * if it cannot be opened. Release with gdml_lines_close.
 */
gdml_err gdml_lines_open(const char *path, gdml_lines **out, gdml_errmsg *e);

/*
 * Reads the next line into *line (without its "\n" or "\r\n"; owned by r,
 * valid until the next call) and its length into *len. *more is false at the
 * end of the file, and *line is then NULL. Returns GDML_ERR_FORMAT for
 * corrupt gzip data or a NUL byte in a line, GDML_ERR_NOMEM for a line that
 * cannot be held; e names path:line.
 */
gdml_err gdml_lines_next(gdml_lines *r, char **line, size_t *len, bool *more, gdml_errmsg *e);

/* The number of the line gdml_lines_next returned last, from 1. */
size_t gdml_lines_number(const gdml_lines *r);

/* The path r reads, for messages. */
const char *gdml_lines_path(const gdml_lines *r);

/* Closes *r and sets it to NULL. Accepts NULL and *r == NULL. */
void gdml_lines_close(gdml_lines **r);

#endif
