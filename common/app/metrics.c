/*
 * metrics.c - the metrics registry and its Prometheus text exposition
 * (metrics.h). No locks: the loop's thread writes, a render reads atomics.
 */
#include "metrics.h"

#include "log.h"

#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define CONST_LABELS_MAX 2
#define NUMBER_MAX 32 /* a value as text: "%.17g" of a double, or NaN/+Inf/-Inf */

struct gdml_metric {
    size_t family;
    char values[GDML_METRIC_LABEL_MAX * GDML_METRIC_MAX_LABELS];
    _Atomic uint64_t bits; /* a double's bits: C11 has no portable lock-free atomic double */
};

struct gdml_metrics {
    const gdml_metric_def **families;
    size_t n_families;
    size_t n_labels[64]; /* per family; families beyond 64 are refused */
    const char *const_names[CONST_LABELS_MAX];
    char const_values[CONST_LABELS_MAX][GDML_METRIC_LABEL_MAX];
    size_t n_const;
    gdml_metric *series;
    size_t max_series;
    _Atomic size_t n_series; /* released once a series' labels are written */
    bool full_logged;
    size_t bound;
};

static uint64_t to_bits(double v)
{
    uint64_t b;
    memcpy(&b, &v, sizeof b);
    return b;
}

static double from_bits(uint64_t b)
{
    double v;
    memcpy(&v, &b, sizeof v);
    return v;
}

static bool name_ok(const char *s, bool colon)
{
    if (!s || !*s || (*s >= '0' && *s <= '9'))
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || (colon && *s == ':')))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

static gdml_err check_def(const gdml_metric_def *d, gdml_errmsg *e)
{
    if (!name_ok(d->name, true))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "metric '%s': not a Prometheus metric name",
                               d->name ? d->name : "(null)");
    if (d->type == GDML_METRIC_COUNTER && !ends_with(d->name, "_total"))
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "metric '%s': a counter's name ends in _total",
                               d->name);
    for (size_t l = 0; l < GDML_METRIC_MAX_LABELS && d->labels[l]; l++)
        if (!name_ok(d->labels[l], false) || strncmp(d->labels[l], "__", 2) == 0)
            return gdml_errmsg_set(e, GDML_ERR_INVALID, "metric '%s': label '%s' is not a name",
                                   d->name, d->labels[l]);
    return GDML_OK;
}

/* Escaped length of s as a label value ("\\", "\"", "\n" take two bytes), or as help text. */
static size_t escaped_len(const char *s, bool quote)
{
    size_t n = 0;
    for (; *s; s++)
        n += (*s == '\\' || *s == '\n' || (quote && *s == '"')) ? 2 : 1;
    return n;
}

/* The most a render writes: every family's two comment lines, and the longest possible series line
 * for each series there may be. */
static size_t compute_bound(const gdml_metrics *m)
{
    size_t comments = 0, longest = 0, consts = 0;
    for (size_t c = 0; c < m->n_const; c++)
        consts += strlen(m->const_names[c]) + 4 + escaped_len(m->const_values[c], true);
    for (size_t f = 0; f < m->n_families; f++) {
        const gdml_metric_def *d = m->families[f];
        size_t name = strlen(d->name);
        comments += 8 + name + escaped_len(d->help ? d->help : "", false) + 1;
        comments += 8 + name + 9;
        size_t line = name + 2 + consts + 1 + NUMBER_MAX + 1;
        for (size_t l = 0; l < m->n_labels[f]; l++)
            line += strlen(d->labels[l]) + 4 + 2 * (GDML_METRIC_LABEL_MAX - 1);
        if (line > longest)
            longest = line;
    }
    return comments + longest * m->max_series + 1;
}

gdml_err gdml_metrics_new(const gdml_metric_def *defs, size_t n_defs, unsigned roles,
                          size_t max_series, const char *const *const_labels, gdml_metrics **out,
                          gdml_errmsg *e)
{
    gdml_metrics *m = calloc(1, sizeof *m);
    if (m) {
        m->families = calloc(n_defs ? n_defs : 1, sizeof *m->families);
        m->series = calloc(max_series ? max_series : 1, sizeof *m->series);
    }
    if (!m || !m->families || !m->series) {
        gdml_metrics_destroy(&m);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu metric series",
                               max_series);
    }
    m->max_series = max_series;
    gdml_err err = GDML_OK;
    for (size_t i = 0; !err && i < n_defs; i++) {
        if (!(defs[i].roles & roles))
            continue;
        if ((err = check_def(&defs[i], e)))
            break;
        for (size_t f = 0; !err && f < m->n_families; f++)
            if (strcmp(m->families[f]->name, defs[i].name) == 0)
                err = gdml_errmsg_set(e, GDML_ERR_INVALID, "metric '%s' is defined twice",
                                      defs[i].name);
        if (!err && m->n_families == sizeof m->n_labels / sizeof m->n_labels[0])
            err = gdml_errmsg_set(e, GDML_ERR_INVALID, "more than %zu metric families",
                                  sizeof m->n_labels / sizeof m->n_labels[0]);
        if (err)
            break;
        size_t l = 0;
        while (l < GDML_METRIC_MAX_LABELS && defs[i].labels[l])
            l++;
        m->n_labels[m->n_families] = l;
        m->families[m->n_families++] = &defs[i];
    }
    for (size_t c = 0; !err && const_labels && const_labels[2 * c]; c++) {
        if (c == CONST_LABELS_MAX || !name_ok(const_labels[2 * c], false) ||
            !const_labels[2 * c + 1]) {
            err = gdml_errmsg_set(e, GDML_ERR_INVALID,
                                  "constant labels: at most %d name, value pairs of valid names",
                                  CONST_LABELS_MAX);
            break;
        }
        m->const_names[c] = const_labels[2 * c];
        snprintf(m->const_values[c], sizeof m->const_values[c], "%s", const_labels[2 * c + 1]);
        m->n_const = c + 1;
    }
    if (err) {
        gdml_metrics_destroy(&m);
        return err;
    }
    m->bound = compute_bound(m);
    *out = m;
    return GDML_OK;
}

void gdml_metrics_destroy(gdml_metrics **m)
{
    if (!m || !*m)
        return;
    free((*m)->families);
    free((*m)->series);
    free(*m);
    *m = NULL;
}

gdml_metric *gdml_metrics_series(gdml_metrics *m, const char *name, const char *const *values)
{
    if (!m)
        return NULL;
    size_t f = 0;
    while (f < m->n_families && strcmp(m->families[f]->name, name) != 0)
        f++;
    if (f == m->n_families) {
        gdml_debug("metric_unknown", "metric=%s", name);
        return NULL;
    }
    char want[sizeof m->series[0].values] = {0};
    for (size_t l = 0; l < m->n_labels[f]; l++)
        snprintf(want + l * GDML_METRIC_LABEL_MAX, GDML_METRIC_LABEL_MAX, "%s",
                 values && values[l] ? values[l] : "");
    size_t n = atomic_load_explicit(&m->n_series, memory_order_relaxed);
    for (size_t i = 0; i < n; i++)
        if (m->series[i].family == f && memcmp(m->series[i].values, want, sizeof want) == 0)
            return &m->series[i];
    if (n == m->max_series) {
        if (!m->full_logged)
            gdml_warn("metrics_full", "series=%zu first_dropped=%s", m->max_series, name);
        m->full_logged = true;
        return NULL;
    }
    gdml_metric *s = &m->series[n];
    s->family = f;
    memcpy(s->values, want, sizeof want);
    atomic_store_explicit(&s->bits, to_bits(0.0), memory_order_relaxed);
    atomic_store_explicit(&m->n_series, n + 1, memory_order_release);
    return s;
}

void gdml_metric_set(gdml_metric *s, double value)
{
    if (s)
        atomic_store_explicit(&s->bits, to_bits(value), memory_order_relaxed);
}

double gdml_metric_value(const gdml_metric *s)
{
    /* The const is the caller's view: an atomic load reads, never writes. */
    return s ? from_bits(atomic_load_explicit((_Atomic uint64_t *)&s->bits, memory_order_relaxed))
             : NAN;
}

void gdml_metric_add(gdml_metric *s, double delta)
{
    if (s && delta >= 0)
        gdml_metric_set(s, gdml_metric_value(s) + delta); /* single writer: no lost update */
}

void gdml_metric_count(gdml_metric *s, double total)
{
    if (s && total > gdml_metric_value(s))
        gdml_metric_set(s, total);
}

size_t gdml_metrics_render_bound(const gdml_metrics *m)
{
    return m ? m->bound : 1;
}

/* An output buffer that never overflows; a line that does not fit is dropped whole. */
typedef struct out {
    char *buf;
    size_t cap, len, line; /* line: where the line being written started */
    bool full;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->full || o->len + n + 1 > o->cap) {
        o->full = true;
        return;
    }
    memcpy(o->buf + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static void put_escaped(out *o, const char *s, bool quote)
{
    for (; *s; s++) {
        if (*s == '\\')
            put(o, "\\\\", 2);
        else if (*s == '\n')
            put(o, "\\n", 2);
        else if (quote && *s == '"')
            put(o, "\\\"", 2);
        else
            put(o, s, 1);
    }
}

static void end_line(out *o)
{
    put(o, "\n", 1);
    if (o->full)
        o->len = o->line; /* cut at the last whole line */
    else
        o->line = o->len;
}

static void put_label(out *o, bool *first, const char *name, const char *value)
{
    put(o, *first ? "{" : ",", 1);
    *first = false;
    puts_(o, name);
    put(o, "=\"", 2);
    put_escaped(o, value, true);
    put(o, "\"", 1);
}

static void put_number(out *o, double v)
{
    char text[NUMBER_MAX];
    if (isnan(v))
        snprintf(text, sizeof text, "NaN");
    else if (isinf(v))
        snprintf(text, sizeof text, v > 0 ? "+Inf" : "-Inf");
    else {
        /* The shortest of 15 or 17 digits that reads back as the same double. */
        snprintf(text, sizeof text, "%.15g", v);
        if (strtod(text, NULL) != v)
            snprintf(text, sizeof text, "%.17g", v);
    }
    puts_(o, text);
}

size_t gdml_metrics_render(const gdml_metrics *m, char *buf, size_t cap)
{
    out o = {.buf = buf, .cap = cap};
    if (!m || cap == 0)
        return 0;
    size_t n = atomic_load_explicit((_Atomic size_t *)&m->n_series, memory_order_acquire);
    for (size_t f = 0; f < m->n_families && !o.full; f++) {
        const gdml_metric_def *d = m->families[f];
        puts_(&o, "# HELP ");
        puts_(&o, d->name);
        put(&o, " ", 1);
        put_escaped(&o, d->help ? d->help : "", false);
        end_line(&o);
        puts_(&o, "# TYPE ");
        puts_(&o, d->name);
        puts_(&o, d->type == GDML_METRIC_COUNTER ? " counter" : " gauge");
        end_line(&o);
        for (size_t i = 0; i < n && !o.full; i++) {
            const gdml_metric *s = &m->series[i];
            if (s->family != f)
                continue;
            bool first = true;
            puts_(&o, d->name);
            for (size_t c = 0; c < m->n_const; c++)
                put_label(&o, &first, m->const_names[c], m->const_values[c]);
            for (size_t l = 0; l < m->n_labels[f]; l++)
                put_label(&o, &first, d->labels[l], s->values + l * GDML_METRIC_LABEL_MAX);
            if (!first)
                put(&o, "}", 1);
            put(&o, " ", 1);
            put_number(&o, gdml_metric_value(s));
            end_line(&o);
        }
    }
    buf[o.len] = '\0';
    return o.len;
}

void gdml_metrics_print_names(const gdml_metric_def *defs, size_t n_defs, unsigned roles,
                              FILE *outf)
{
    for (size_t i = 0; i < n_defs; i++)
        if (defs[i].roles & roles)
            fprintf(outf, "%s\n", defs[i].name);
}
