/*
 * region_score.c - the regional server's held-out scores: each worker's
 * latest, as its PUSHes carry it, and their sum over the live workers for
 * the newest version they scored, which the DELTA carries to the
 * coordinator (docs/protocol.md, "Validation figures"). Metrics only:
 * nothing here changes a step, a gradient or a delta.
 */
#include "region_impl.h"

void region_take_score(gdml_region *r, int64_t now, int i, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    if (h->val.rows == 0)
        return;
    gdml_member *m = &r->workers.slots[i];
    if (h->val_version > r->version) {
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_BOUNDS, false,
                      "held-out score of version %llu, which this server has not sent; the "
                      "score is ignored, the gradient kept",
                      (unsigned long long)h->val_version);
        return;
    }
    if (!gdml_score_ok(&h->val, m->samples)) {
        /* An honest worker holds out at most half its shard: no more rows
         * than the samples it declared. */
        region_reject(r, now, GDML_LINK_DOWN, rx, GDML_REASON_BOUNDS, false,
                      "held-out score of %llu rows, more than the %llu samples its HELLO "
                      "declared; the score is ignored, the gradient kept",
                      (unsigned long long)h->val.rows, (unsigned long long)m->samples);
        return;
    }
    r->wslots[i].score = h->val;
    r->wslots[i].score_version = h->val_version;
}

/* True if worker slot i is live and has a score. */
static bool scored(const gdml_region *r, size_t i)
{
    gdml_member_state st = r->workers.slots[i].state;
    return (st == GDML_MEMBER_JOINED || st == GDML_MEMBER_SILENT) && r->wslots[i].score.rows;
}

void region_score(const gdml_region *r, gdml_score *out, uint64_t *version)
{
    /* The newest version any live worker scored: with overlap, a delta can
     * go out the moment its version arrives, before any worker scored it. */
    *out = (gdml_score){0};
    *version = 0;
    for (size_t i = 0; i < r->workers.used; i++)
        if (scored(r, i) && r->wslots[i].score_version > *version)
            *version = r->wslots[i].score_version;
    for (size_t i = 0; i < r->workers.used; i++)
        if (scored(r, i) && r->wslots[i].score_version == *version)
            gdml_score_add(out, &r->wslots[i].score);
}
