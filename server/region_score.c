/*
 * region_score.c - the regional server's held-out scores: each worker's
 * latest, as its PUSHes carry it, and their sum over the live workers for
 * the version a delta is against, which the DELTA carries to the
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
    r->wslots[i].score_version = h->version;
}

void region_score(const gdml_region *r, gdml_score *out)
{
    *out = (gdml_score){0};
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member_state st = r->workers.slots[i].state;
        const worker_slot *w = &r->wslots[i];
        if ((st == GDML_MEMBER_JOINED || st == GDML_MEMBER_SILENT) &&
            w->score_version == r->version)
            gdml_score_add(out, &w->score);
    }
}
