/*
 * logfmt.h - inside log.c: appending to a gdml_log_line within its bound.
 * The public field functions (gdml_log_str, gdml_log_fields, ...) are
 * defined in logfmt.c beside these.
 */
#ifndef GDML_LOGFMT_H
#define GDML_LOGFMT_H

#include "log.h"

#include <stdbool.h>
#include <stddef.h>

/* Appends n bytes as they are; false (and nothing appended) when they do not fit. */
bool gdml_logfmt_put(gdml_log_line *l, const char *s, size_t n);

/* Ends the line: "truncated" if fields were lost, the closing brace in JSON, the newline. */
void gdml_logfmt_close(gdml_log_line *l);

#endif
