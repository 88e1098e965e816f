/*
 * store_audit.c - a store's history checked against what training promises:
 * versions numbered without gaps, and no region's delta merged twice.
 *
 * Each version records, per region, the highest sequence number of that
 * region's deltas merged so far and the weight it was merged with in this
 * version (0 if it sent nothing). A delta merged twice shows as a region
 * contributing to two versions under the same sequence number.
 */
#include "store.h"

#include <stdio.h>
#include <string.h>

typedef struct audit_ctx {
    gdml_store_audit *out;
    /* Per region: the sequence number of its last contribution. */
    char names[GDML_STORE_MAX_REGIONS][GDML_NAME_MAX];
    uint64_t last_seq[GDML_STORE_MAX_REGIONS];
    size_t n;
} audit_ctx;

static size_t region_index(audit_ctx *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->names[i], name) == 0)
            return i;
    if (c->n == GDML_STORE_MAX_REGIONS)
        return SIZE_MAX;
    snprintf(c->names[c->n], GDML_NAME_MAX, "%s", name);
    c->last_seq[c->n] = 0;
    return c->n++;
}

static int audit_visit(const gdml_version_meta *m, void *user)
{
    audit_ctx *c = user;
    gdml_store_audit *a = c->out;
    if (a->versions == 0)
        a->first = m->version;
    else if (m->version != a->last + 1)
        a->missing += m->version - a->last - 1;
    a->last = m->version;
    a->versions++;
    for (uint32_t r = 0; r < m->n_regions; r++) {
        const gdml_region_part *p = &m->regions[r];
        size_t i = region_index(c, p->name);
        if (i == SIZE_MAX || p->samples == 0)
            continue;
        a->contributions++;
        if (p->seq <= c->last_seq[i]) {
            if (a->double_merges++ == 0) {
                a->double_version = m->version;
                snprintf(a->double_region, sizeof a->double_region, "%s", p->name);
            }
        } else {
            c->last_seq[i] = p->seq;
        }
    }
    return 0;
}

gdml_err gdml_store_audit_history(gdml_store *s, gdml_store_audit *out, gdml_errmsg *e)
{
    memset(out, 0, sizeof *out);
    audit_ctx c = {.out = out};
    return gdml_store_each(s, audit_visit, &c, e);
}
