/*
 * region_policy.c - the regional server's side of encoder = auto: it feeds
 * the controller (controller.h) what each round measured, applies its
 * choice to the uplink (encoder, k) and to when the region syncs (H), logs
 * every change with the inputs that drove it, and names the choice in the
 * DELTA header's text, from which the coordinator shows it on its progress
 * line and follows it on the downlink.
 */
#include "region_impl.h"

#include "log.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

/* The controller's view of the budget in force. */
static gdml_ctl_config ctl_config(const gdml_region *r)
{
    gdml_budget_config up = gdml_wan_budget(r->up);
    gdml_msg_header h;
    region_delta_header(r, &h);
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = GDML_MSG_HEADER_MAX;
    snprintf(h.text, sizeof h.text, "topk+int4/0.01/H%llu",
             (unsigned long long)r->cfg->sync_every * 4);
    if (gdml_msg_encode(&h, buf, sizeof buf, &len) != GDML_OK)
        len = GDML_MSG_HEADER_MAX;
    return (gdml_ctl_config){.n = r->n,
                             .h_base = r->cfg->sync_every,
                             .up_rate = up.rate,
                             .down_rate = (double)r->cfg->down_rate,
                             .up_cap = up.cap,
                             .down_cap = r->cfg->down_cap,
                             .target_ratio = r->cfg->target_ratio,
                             .drift_corrected = r->cfg->scaffold,
                             /* a chunk's header and its framing (9 bytes, more with CURVE) */
                             .overhead = len + 9 + (r->cfg->curve ? 32 : 0)};
}

static gdml_err apply(gdml_region *r, const gdml_ctl_choice *ch, gdml_errmsg *e)
{
    gdml_err err = gdml_wan_set_encoder(r->up, ch->spec, ch->k_fraction, gdml_wan_seed(r->up), e);
    if (err)
        return err;
    r->sync_every = ch->h;
    gdml_ctl_format(ch, r->policy, sizeof r->policy);
    return GDML_OK;
}

gdml_err region_policy_start(gdml_region *r, gdml_errmsg *e)
{
    if (!r->cfg->auto_encoder || r->ctl)
        return GDML_OK;
    gdml_ctl_config cc = ctl_config(r);
    gdml_err err = gdml_ctl_new(&cc, &r->ctl, e);
    if (err)
        return err;
    gdml_ctl_choice ch = gdml_ctl_current(r->ctl);
    if ((err = apply(r, &ch, e)))
        return err;
    gdml_info("policy_start",
              "policy=%s params=%zu up_bytes_per_s=%.0f down_bytes_per_s=%llu "
              "target_ratio=%g",
              r->policy, r->n, cc.up_rate, (unsigned long long)cc.down_rate, cc.target_ratio);
    return GDML_OK;
}

void region_policy_budget(gdml_region *r)
{
    if (r->ctl) {
        gdml_ctl_config cc = ctl_config(r);
        gdml_ctl_set_budget(r->ctl, &cc);
    }
}

void region_policy_before_sync(gdml_region *r, int64_t now, gdml_msg_header *h)
{
    if (!r->ctl)
        return;
    if (r->ctl_round != r->syncs + 1 && r->syncs > 0) {
        /* Once per round, however often the budget puts the delta off. */
        r->ctl_round = r->syncs + 1;
        uint64_t moved = gdml_wan_bytes_sent(r->up) + gdml_wan_bytes_received(r->up);
        uint64_t spent, in_window;
        gdml_wan_budget_state(r->up, now, &spent, &in_window);
        gdml_ctl_measure m = {.loss = h->metric,
                              .bytes = moved - r->ctl_bytes_mark,
                              .residual_ratio = r->residual_ratio,
                              .step_ms = r->steps_since_sync ? (double)(now - r->last_sync_ms) /
                                                                   (double)r->steps_since_sync
                                                             : NAN,
                              .up_spent = spent,
                              .down_spent = gdml_wan_bytes_received(r->up)};
        r->ctl_bytes_mark = moved;
        gdml_ctl_choice ch;
        char why[GDML_ERRMSG_MAX / 2];
        char old[GDML_CTL_POLICY_MAX];
        snprintf(old, sizeof old, "%s", r->policy);
        if (gdml_ctl_decide(r->ctl, &m, &ch, why, sizeof why)) {
            gdml_errmsg e;
            if (apply(r, &ch, &e))
                gdml_warn("policy_kept", "policy=%s why=%s", old, e.text);
            else
                gdml_info("policy_change", "from=%s to=%s sync=%llu why=%s", old, r->policy,
                          (unsigned long long)r->syncs + 1, why);
        }
    }
    snprintf(h->text, sizeof h->text, "%s", r->policy);
}

void region_policy_after_sync(gdml_region *r, const gdml_wan_update *u)
{
    if (!r->ctl)
        return;
    gdml_ctl_note_bytes(r->ctl, u->wire);
    r->residual_ratio = u->update_norm > 0 ? u->residual_norm / u->update_norm : NAN;
}
