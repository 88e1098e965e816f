/*
 * ratelog.c - rate-limited, counted log lines (ratelog.h). A small table
 * searched linearly: it holds the pairs of one interval, and the number of
 * misbehaving peers at once is small next to the cost of a log line.
 */
#include "ratelog.h"

#include "names.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OTHERS "(others)"

typedef struct pair {
    char peer[GDML_NAME_MAX + 16];
    const char *reason;
    const char *event; /* of the pair's first line, repeated in its summary */
    gdml_log_level level;
    int64_t since_ms;    /* start of the pair's interval */
    uint64_t suppressed; /* events counted but not logged in that interval */
} pair;

struct gdml_ratelog {
    int64_t interval_ms;
    size_t cap, n;
    uint64_t total, lines;
    pair *pairs;
};

gdml_err gdml_ratelog_new(int64_t interval_ms, size_t max_pairs, gdml_ratelog **out)
{
    if (interval_ms <= 0 || max_pairs < 2)
        return GDML_ERR_INVALID;
    gdml_ratelog *r = calloc(1, sizeof *r);
    if (!r || !(r->pairs = calloc(max_pairs, sizeof *r->pairs))) {
        free(r);
        return GDML_ERR_NOMEM;
    }
    r->interval_ms = interval_ms;
    r->cap = max_pairs;
    *out = r;
    return GDML_OK;
}

void gdml_ratelog_destroy(gdml_ratelog **rp)
{
    if (!rp || !*rp)
        return;
    free((*rp)->pairs);
    free(*rp);
    *rp = NULL;
}

static pair *find(gdml_ratelog *r, const char *peer, const char *reason)
{
    for (size_t i = 0; i < r->n; i++)
        if (strcmp(r->pairs[i].peer, peer) == 0 && strcmp(r->pairs[i].reason, reason) == 0)
            return &r->pairs[i];
    return NULL;
}

static void summarize(gdml_ratelog *r, const pair *p)
{
    if (p->suppressed == 0 || p->level > gdml_log_threshold())
        return;
    r->lines++;
    GDML_LOG(p->level, "suppressed", "of=%s peer=%s reason=%s count=%llu interval_ms=%lld",
             p->event, p->peer, p->reason, (unsigned long long)p->suppressed,
             (long long)r->interval_ms);
}

void gdml_ratelog_flush(gdml_ratelog *r, int64_t now_ms)
{
    size_t kept = 0;
    for (size_t i = 0; i < r->n; i++) {
        pair *p = &r->pairs[i];
        if (now_ms - p->since_ms < r->interval_ms) {
            r->pairs[kept++] = *p;
            continue;
        }
        summarize(r, p); /* its interval is over: the pair leaves the table */
    }
    r->n = kept;
}

void gdml_ratelog_note(gdml_ratelog *r, int64_t now_ms, gdml_log_level level, const char *event,
                       const char *peer, const char *reason, const char *fields, ...)
{
    r->total++;
    gdml_ratelog_flush(r, now_ms);
    pair *p = find(r, peer, reason);
    if (!p && r->n >= r->cap - 1) { /* no room for another peer: the shared entry */
        peer = OTHERS;
        p = find(r, OTHERS, reason);
        if (!p && r->n == r->cap)
            return; /* the last slot holds another reason: counted in the total only */
    }
    if (p) {
        p->suppressed++;
        return;
    }
    p = &r->pairs[r->n++];
    snprintf(p->peer, sizeof p->peer, "%s", peer);
    p->reason = reason;
    p->event = event;
    p->level = level;
    p->since_ms = now_ms;
    p->suppressed = 0;
    if (level > gdml_log_threshold())
        return;
    r->lines++;
    gdml_log_line line;
    gdml_log_begin(&line, level, event);
    gdml_log_str(&line, "peer", peer);
    gdml_log_str(&line, "reason", reason);
    if (fields) {
        va_list ap;
        va_start(ap, fields);
        gdml_log_vfields(&line, fields, ap);
        va_end(ap);
    }
    gdml_log_emit(&line);
}

uint64_t gdml_ratelog_total(const gdml_ratelog *r)
{
    return r->total;
}

uint64_t gdml_ratelog_lines(const gdml_ratelog *r)
{
    return r->lines;
}
