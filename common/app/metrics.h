/*
 * metrics.h - a registry of Prometheus metrics and its text exposition
 * (format 0.0.4: "# HELP", "# TYPE", then one "name{labels} value" line a
 * series), with no I/O: metrics_http.h serves what gdml_metrics_render
 * writes.
 *
 * Families (a name, a type, label names and a help line) come from a table
 * given at creation, gdml's catalogue (metrics_catalog.c) in the programs.
 * A series is a family with one value per label name, made on first use
 * and kept for the life of the registry; the number of series is bounded at
 * creation, so a render is too (gdml_metrics_render_bound).
 *
 * Threads: one thread, the program's event loop, makes series and sets
 * their values; one other thread, the HTTP server's, renders at any time.
 * Neither takes a lock or waits for the other. A value is a double's bits
 * in a C11 atomic uint64_t; a series is published by a release store of the
 * series count after its labels are written, and a render reads only the
 * series counted by an acquire load. A render may see one series' value
 * from before and another's from after the same loop turn, which a scrape
 * tolerates: each value on its own is one the loop stored.
 *
 * Handles are NULL-safe: with metrics off the registry is NULL,
 * gdml_metrics_series returns NULL and setting a NULL series does nothing,
 * so the call sites need no checks.
 */
#ifndef GDML_METRICS_H
#define GDML_METRICS_H

#include "err.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

typedef enum gdml_metric_type { GDML_METRIC_COUNTER, GDML_METRIC_GAUGE } gdml_metric_type;

/* Who exports a family: a bit per long-running program. */
enum {
    GDML_ROLE_COORDINATOR = 1u << 0,
    GDML_ROLE_SERVER = 1u << 1,
    GDML_ROLE_WORKER = 1u << 2,
};

#define GDML_METRIC_MAX_LABELS 3 /* per family, besides the registry's constant labels */
#define GDML_METRIC_LABEL_MAX 64 /* bytes of a label value, its NUL included; longer is cut */

typedef struct gdml_metric_def {
    const char *name; /* [a-zA-Z_:][a-zA-Z0-9_:]*; a counter's ends in _total */
    gdml_metric_type type;
    unsigned roles;                             /* GDML_ROLE_* bits */
    const char *labels[GDML_METRIC_MAX_LABELS]; /* label names; the first NULL ends them */
    const char *help;                           /* one line: what, in which unit */
} gdml_metric_def;

typedef struct gdml_metrics gdml_metrics;
typedef struct gdml_metric gdml_metric;

/*
 * Makes a registry of the families of defs[0..n_defs) whose roles include
 * any bit of roles, with room for max_series series. const_labels holds
 * name, value pairs put on every series (e.g. role="server"), ended by
 * NULL; NULL for none. GDML_ERR_INVALID with e naming the family for a bad
 * name, a counter not ending in _total, too many constant labels, or a
 * repeated name; GDML_ERR_NOMEM.
 */
gdml_err gdml_metrics_new(const gdml_metric_def *defs, size_t n_defs, unsigned roles,
                          size_t max_series, const char *const *const_labels, gdml_metrics **out,
                          gdml_errmsg *e);

/* Frees it; no render may be running (stop the HTTP server first). NULL-safe; clears *m. */
void gdml_metrics_destroy(gdml_metrics **m);

/*
 * The series of family name with label values values[0..k) (k: the
 * family's label count; NULL if it has none), made if new. Returns NULL if
 * m is NULL, the family is not in the registry, or max_series are made
 * (the first such miss is logged). Values longer than
 * GDML_METRIC_LABEL_MAX - 1 bytes are cut. The loop's thread only; a
 * linear search, so callers keep the handle or look it up at most a few
 * times a second.
 */
gdml_metric *gdml_metrics_series(gdml_metrics *m, const char *name, const char *const *values);

/* Sets a gauge (or a counter: use gdml_metric_count for those). NULL-safe. */
void gdml_metric_set(gdml_metric *s, double value);

/* Adds delta (>= 0 for a counter; a negative one is ignored there). NULL-safe. */
void gdml_metric_add(gdml_metric *s, double delta);

/*
 * A counter kept elsewhere as a running total: raises the series to total,
 * never lowers it, so the exported counter only grows. NULL-safe.
 */
void gdml_metric_count(gdml_metric *s, double total);

/* The value now (NaN for NULL). */
double gdml_metric_value(const gdml_metric *s);

/* The most bytes gdml_metrics_render writes, its NUL included. */
size_t gdml_metrics_render_bound(const gdml_metrics *m);

/*
 * Writes the exposition text into buf[0..cap) and returns its length
 * (NUL excluded). Every family gets its HELP and TYPE lines, series or
 * not. With cap >= gdml_metrics_render_bound the text is whole; with less
 * it is cut at a line's end. Any thread, while the loop runs.
 */
size_t gdml_metrics_render(const gdml_metrics *m, char *buf, size_t cap);

/* Prints the names of the families of defs whose roles include any of roles, one a line. */
void gdml_metrics_print_names(const gdml_metric_def *defs, size_t n_defs, unsigned roles,
                              FILE *out);

#endif
