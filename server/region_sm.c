/*
 * region_sm.c - the regional server's state machine (region_sm.h): its life
 * cycle, where each event goes, and the clock (heartbeats, silent peers,
 * stalls, the run's timeout).
 */
#include "region_impl.h"

#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WORKER_SLOTS 1024
#define TICK_MAX_MS 100

gdml_err gdml_region_new(const gdml_region_config *cfg, gdml_region **out, gdml_errmsg *e)
{
    gdml_region *r = calloc(1, sizeof *r);
    if (!r)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    r->cfg = cfg;
    r->state = REGION_JOINING;
    r->sync_every = cfg->sync_every;
    r->wan_seq = r->lan_seq = cfg->seq_base;
    size_t slots = cfg->n_members ? cfg->n_members : MAX_WORKER_SLOTS;
    gdml_err err = gdml_members_init(&r->workers, slots, cfg->members, cfg->n_members);
    if (!err && !(r->wslots = calloc(slots, sizeof *r->wslots)))
        err = GDML_ERR_NOMEM;
    if (!err)
        err = gdml_ratelog_new(10000, 128, &r->log);
    gdml_wan_config wc = {.encoder = cfg->auto_encoder ? "dense" : cfg->encoder,
                          .k_fraction = cfg->k_fraction,
                          .threshold = cfg->threshold,
                          .budget = cfg->up_budget,
                          .min_message_bytes = cfg->min_message_bytes,
                          .peer = "coordinator",
                          .direction = "up",
                          .byte_log = cfg->byte_log,
                          .curve = cfg->curve};
    if (!err)
        err = gdml_wan_new(&wc, &r->up, e);
    if (err) {
        gdml_region_destroy(&r);
        return err == GDML_ERR_NOMEM ? gdml_errmsg_set(e, err, "out of memory") : err;
    }
    *out = r;
    return GDML_OK;
}

void gdml_region_destroy(gdml_region **rp)
{
    if (!rp || !*rp)
        return;
    gdml_region *r = *rp;
    *rp = NULL;
    for (size_t i = 0; r->wslots && i < r->workers.used; i++) {
        gdml_transfer_fini(&r->wslots[i].in);
        gdml_transfer_fini(&r->wslots[i].pull_in);
        free(r->wslots[i].counted);
        free(r->wslots[i].keys);
    }
    free(r->wslots);
    gdml_members_fini(&r->workers);
    gdml_transfer_fini(&r->from_coord);
    gdml_ratelog_destroy(&r->log);
    gdml_wan_destroy(&r->up);
    gdml_ctl_destroy(&r->ctl);
    gdml_codec_destroy(&r->dense);
    gdml_codec_destroy(&r->pulled);
    free(r->ent_idx);
    free(r->ent_val);
    free(r->touched);
    free(r->touched_marks);
    gdml_actions_fini(&r->actions);
    free(r->params);
    free(r->anchor);
    free(r->grad_sum);
    free(r->chunk_batch);
    free(r->chunk_done);
    free(r->scratch);
    free(r->c_local);
    free(r->c_global);
    free(r->sent);
    gdml_optim_destroy(&r->opt);
    region_restored_fini(r);
    free(r);
}

void gdml_region_start(gdml_region *r, int64_t now)
{
    r->progress_ms = r->stall_log_ms = r->coord_heard_ms = now;
}

bool gdml_region_overlaps(const char *overlap, bool scaffold)
{
    return strcmp(overlap, "on") == 0 || (strcmp(overlap, "auto") == 0 && !scaffold);
}

double region_lr(const gdml_region *r)
{
    /* Non-IID regions drift apart at a constant rate; decaying it per global
     * version lets the merged model settle (as FedAvg's convergence needs). */
    return r->cfg->learning_rate * pow(r->cfg->lr_decay, (double)r->version);
}

void region_reject(gdml_region *r, int64_t now, int link, const gdml_rx *rx, gdml_reason reason,
                   bool tell, const char *fmt, ...)
{
    char why[GDML_MSG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    r->stats.rejected[reason]++;
    const char *who = *rx->name ? rx->name : "?";
    gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "frame_refused", who, gdml_reason_name(reason),
                      "link=%s type=%s why=%s", link == GDML_LINK_UP ? "wan" : "lan",
                      gdml_msg_type_name(rx->header.type), why);
    /* Workers are answered; the coordinator is not argued with. */
    if (tell && link == GDML_LINK_DOWN)
        region_send_control(r, link, &rx->peer, GDML_MSG_ERROR, reason, why, now);
}

gdml_err region_send_control(gdml_region *r, int link, const gdml_peer *to, gdml_msg_type type,
                             gdml_reason code, const char *text, int64_t now)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, r->cfg->name);
    h.seq = link == GDML_LINK_UP ? r->wan_seq + 1 : ++r->lan_seq;
    h.version = r->version;
    h.step = r->step;
    h.code = code;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    if (type == GDML_MSG_HELLO) {
        h.count = region_samples(r);
        h.down_rate = r->cfg->down_rate;
        h.down_cap = r->cfg->down_cap;
        h.acked = 0;
        /* The layout says it holds a model of the coordinator's: not one it
         * started early on, which the coordinator must still send. */
        snprintf(h.text, sizeof h.text, "%s", r->welcomed ? r->layout_text : "");
    }
    gdml_blob *f = NULL;
    if (gdml_frame_header_only(&h, &f))
        return GDML_ERR_NOMEM;
    gdml_err err = GDML_OK;
    if (link == GDML_LINK_UP) {
        size_t len;
        gdml_blob_view(f, &len);
        if (gdml_wan_admit(r->up, type, len, now) != 0)
            err = GDML_ERR_AGAIN; /* the budget has no room now: the caller tries later */
        else {
            r->wan_seq++;
            r->coord_sent_ms = now;
            err = gdml_actions_send(&r->actions, link, NULL, f);
        }
    } else {
        err = gdml_actions_send(&r->actions, link, to, f);
    }
    gdml_blob_unref(&f);
    return err;
}

void region_exit(gdml_region *r, int64_t now, int status, gdml_err err, const char *why)
{
    if (r->state == REGION_DONE)
        return;
    /* A last checkpoint, however the run ends (STOP, a signal, a timeout),
     * so that a restart loses none of the steps trained since the last
     * delta or GLOBAL. Queued before the exit, it is written first. While
     * joining there is no live model: a checkpoint being resumed from stays
     * as it is. */
    if (r->state != REGION_JOINING)
        region_checkpoint(r, now);
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member *m = &r->workers.slots[i];
        if (m->state == GDML_MEMBER_JOINED || m->state == GDML_MEMBER_SILENT)
            region_send_control(r, GDML_LINK_DOWN, &m->route, GDML_MSG_STOP, GDML_REASON_NONE, why,
                                now);
    }
    r->state = REGION_DONE;
    gdml_action act = {.kind = GDML_ACT_EXIT, .status = status, .err = err};
    snprintf(act.text, sizeof act.text, "%s", why);
    gdml_actions_push(&r->actions, &act);
}

void gdml_region_on_frame(gdml_region *r, int64_t now, int link, const gdml_rx *rx)
{
    if (r->state == REGION_DONE)
        return;
    if (link == GDML_LINK_UP)
        region_on_coordinator(r, now, rx);
    else
        region_on_worker(r, now, rx);
}

void gdml_region_on_refused(gdml_region *r, int64_t now, int link, const gdml_rx *rx,
                            const char *why)
{
    gdml_reason reason = rx->reason < GDML_REASON_COUNT ? rx->reason : GDML_REASON_MALFORMED;
    r->stats.rejected[reason]++;
    gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "frame_refused",
                      link == GDML_LINK_UP ? "coordinator-link" : "worker-link",
                      gdml_reason_name(reason), "why=%s", why);
}

void gdml_region_on_dropped(gdml_region *r, int64_t now, const gdml_peer *route)
{
    int i = gdml_members_drop_route(&r->workers, route);
    if (i < 0)
        return;
    r->stats.rejected[GDML_REASON_SLOW]++;
    gdml_warn("worker_slow_reader", "worker=%s why=%s", r->workers.slots[i].name,
              "it stopped reading what it was sent; dropped it (it may join again)");
    region_check_step(r, now);
}

void gdml_region_on_stop(gdml_region *r, int64_t now, const char *why)
{
    region_send_control(r, GDML_LINK_UP, NULL, GDML_MSG_LEAVE, GDML_REASON_NONE, why, now);
    region_exit(r, now, 130, GDML_ERR_INTERRUPTED, why);
}

gdml_err gdml_region_set_budget(gdml_region *r, const gdml_budget_config *up, uint64_t down_rate,
                                uint64_t down_cap, int64_t now, gdml_errmsg *e)
{
    /* Judged by the largest DELTA header this region will ever send. */
    gdml_msg_header h;
    region_delta_header(r, &h);
    h.seq = h.step = h.count = h.version = GDML_MSG_MAX_U48;
    h.down_rate = h.down_cap = GDML_MSG_MAX_U48;
    h.lr_steps = GDML_MSG_MAX_LR_STEPS;
    gdml_err err = gdml_wan_try_budget(r->up, up, &h, now, e);
    if (err)
        return err;
    /* The configuration outlives the state machine; only the asked-for downlink changes. */
    ((gdml_region_config *)r->cfg)->down_rate = down_rate;
    ((gdml_region_config *)r->cfg)->down_cap = down_cap;
    region_policy_budget(r);
    return GDML_OK;
}

/* Names who the region waits for, for stall lines and the timeout error. */
static void describe_wait(const gdml_region *r, char *buf, size_t cap)
{
    size_t len;
    switch (r->state) {
    case REGION_JOINING:
        snprintf(buf, cap, "%s; %zu of %u workers joined",
                 r->n ? "the coordinator's model is here" : "no model from the coordinator yet",
                 gdml_members_count(&r->workers, GDML_MEMBER_JOINED), r->cfg->workers);
        break;
    case REGION_HOLDING:
        snprintf(buf, cap, "the uplink budget has not allowed the delta of step %llu yet",
                 (unsigned long long)r->step);
        break;
    case REGION_SYNCING:
        if (!r->welcomed)
            snprintf(buf, cap,
                     "no model from the coordinator yet (training started early; "
                     "its first sync waits for it)");
        else
            snprintf(buf, cap, "no GLOBAL from the coordinator after delta %llu (version %llu)",
                     (unsigned long long)r->delta_seq, (unsigned long long)r->version);
        break;
    default:
        len = (size_t)snprintf(buf, cap,
                               "no gradient for step %llu from:", (unsigned long long)r->step);
        for (size_t i = 0; i < r->workers.used && len < cap; i++) {
            const gdml_member *m = &r->workers.slots[i];
            if ((m->state == GDML_MEMBER_JOINED || m->state == GDML_MEMBER_SILENT) &&
                !r->wslots[i].pushed && !r->wslots[i].excused)
                len += (size_t)snprintf(buf + len, cap - len, " '%s'%s", m->name,
                                        m->state == GDML_MEMBER_SILENT ? " (silent)" : "");
        }
        break;
    }
}

void gdml_region_on_reconnected(gdml_region *r, int64_t now)
{
    if (r->state == REGION_DONE || !r->joined_coord)
        return; /* not joined yet: the HELLO it will send is the first */
    gdml_info("reconnect", "peer=coordinator");
    region_hello(r, now);
}

void gdml_region_on_tick(gdml_region *r, int64_t now)
{
    gdml_ratelog_flush(r->log, now);
    if (r->state == REGION_DONE)
        return;
    const gdml_region_config *cfg = r->cfg;
    for (size_t i = 0; i < r->workers.used; i++) {
        gdml_member *m = &r->workers.slots[i];
        if (m->state != GDML_MEMBER_JOINED)
            continue;
        if (now - m->heard_ms > cfg->peer_timeout_ms) {
            m->state = GDML_MEMBER_SILENT;
            gdml_warn("worker_silent", "worker=%s silent_ms=%lld", m->name,
                      (long long)(now - m->heard_ms));
            region_check_step(r, now);
        } else if (now - r->wslots[i].sent_ms >= cfg->heartbeat_ms) {
            region_send_control(r, GDML_LINK_DOWN, &m->route, GDML_MSG_HEARTBEAT, GDML_REASON_NONE,
                                NULL, now);
            r->wslots[i].sent_ms = now;
        }
    }
    if (r->state == REGION_HOLDING)
        region_retry_hold(r, now);
    if (r->joined_coord && now - r->coord_sent_ms >= cfg->heartbeat_ms)
        region_send_control(r, GDML_LINK_UP, NULL, GDML_MSG_HEARTBEAT, GDML_REASON_NONE, NULL, now);
    /* No WELCOME yet, or the coordinator silent while we wait on it: join (again). */
    if (r->joined_coord && r->state != REGION_TRAINING && r->state != REGION_HOLDING &&
        now - r->coord_heard_ms > cfg->peer_timeout_ms && now - r->hello_ms > cfg->peer_timeout_ms)
        region_hello(r, now);
    char what[GDML_ERRMSG_MAX / 2];
    if (now - r->progress_ms > cfg->timeout_ms) {
        describe_wait(r, what, sizeof what);
        char text[GDML_ERRMSG_MAX];
        snprintf(text, sizeof text, "no progress for %lld ms (%s)", (long long)cfg->timeout_ms,
                 what);
        region_exit(r, now, 3, GDML_ERR_TIMEOUT, text);
        return;
    }
    if (now - r->progress_ms >= cfg->heartbeat_ms && now - r->stall_log_ms >= cfg->heartbeat_ms) {
        describe_wait(r, what, sizeof what);
        gdml_info("waiting", "ms=%lld for=%s", (long long)(now - r->progress_ms), what);
        r->stall_log_ms = now;
    }
}

bool gdml_region_next_action(gdml_region *r, gdml_action *out)
{
    return gdml_actions_pop(&r->actions, out);
}

int64_t gdml_region_next_timer(const gdml_region *r, int64_t now)
{
    int64_t wait = TICK_MAX_MS;
    if (r->state == REGION_HOLDING && r->hold_until_ms - now < wait)
        wait = r->hold_until_ms - now;
    return wait < 0 ? 0 : wait;
}

void gdml_region_stats_get(const gdml_region *r, gdml_region_stats *out)
{
    *out = r->stats;
    out->steps = r->step;
    out->syncs = r->syncs;
    out->version = r->version;
}

void gdml_region_uplink_budget(gdml_region *r, int64_t now_ms, double *rate, uint64_t *tokens)
{
    *rate = gdml_wan_budget(r->up).rate;
    *tokens = gdml_wan_available(r->up, now_ms);
}

void gdml_region_wan_bytes(const gdml_region *r, uint64_t *up, uint64_t *down)
{
    *up = gdml_wan_bytes_sent(r->up);
    *down = gdml_wan_bytes_received(r->up);
}
