/*
 * coord_sm.c - the global coordinator's state machine (coord_sm.h).
 *
 * States: WAITING for the first regions, then rounds: COLLECTING deltas
 * for the current version, COMMITTING the merged one (until the loop
 * reports), and FINISHING (STOP to every region, then EXIT).
 *
 * What goes down to a region is what it lacks: for each region the
 * coordinator keeps its view of the global model (what the frames it was
 * sent decode to) and sends encode(global - view) through that region's
 * downlink (wan.h), under the budget the region asked for in HELLO and
 * DELTA. A region starts from the initial model of [model] seed, so WELCOME
 * carries global - initial. A message the budget does not allow yet stays
 * pending and goes out as soon as it does.
 *
 * Sequence numbers make merges idempotent: a region's delta whose sequence
 * number is not above the last one merged from that region is ignored, and
 * those numbers are committed with every version, so a resumed coordinator
 * still knows them.
 */
#include "coord_sm.h"
#include "coord_impl.h"

#include "chunk.h"
#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void reject(gdml_coord *c, int64_t now, const gdml_rx *rx, gdml_reason reason, bool tell,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void reject(gdml_coord *c, int64_t now, const gdml_rx *rx, gdml_reason reason, bool tell,
                   const char *fmt, ...)
{
    char why[GDML_MSG_TEXT_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    c->stats.rejected[reason]++;
    const char *who = *rx->name ? rx->name : "?";
    gdml_ratelog_note(c->log, now, GDML_LOG_WARN, "frame_refused", who, gdml_reason_name(reason),
                      "type=%s why=%s", gdml_msg_type_name(rx->header.type), why);
    if (tell)
        coord_tell(c, now, &rx->peer, reason, why);
}

gdml_err gdml_coord_new(const gdml_coord_config *cfg, gdml_coord **out, gdml_errmsg *e)
{
    const gdml_model_ops *ops = gdml_model_find(cfg->layout.kind);
    if (!ops)
        return gdml_errmsg_set(e, GDML_ERR_INVALID, "[model] kind '%s' is not built in",
                               cfg->layout.kind);
    gdml_coord *c = calloc(1, sizeof *c);
    if (!c)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    c->cfg = cfg;
    c->ops = ops;
    c->n = ops->param_count(&cfg->layout);
    gdml_layout_format(&cfg->layout, c->layout_text, sizeof c->layout_text);
    c->train_loss = NAN;
    /* Without a member list any name may join, up to the store's limit of regions. */
    size_t slots = cfg->n_members ? cfg->n_members : GDML_STORE_MAX_REGIONS;
    gdml_err err = gdml_members_init(&c->members, slots, cfg->members, cfg->n_members);
    if (!err)
        err = gdml_ratelog_new(10000, 128, &c->log);
    if (!err)
        err = gdml_merge_new(&cfg->merge, c->n, &c->merge, e);
    if (err) {
        gdml_coord_destroy(&c);
        return err == GDML_ERR_NOMEM ? gdml_errmsg_set(e, err, "out of memory") : err;
    }
    size_t n_state = 0;
    gdml_merge_state(c->merge, &n_state);
    c->slots = calloc(slots, sizeof *c->slots);
    c->global = malloc(c->n * sizeof(float));
    c->next = malloc(c->n * sizeof(float));
    c->state_backup = n_state ? malloc(n_state * sizeof(float)) : NULL;
    if (!c->slots || !c->global || !c->next || (n_state && !c->state_backup)) {
        gdml_coord_destroy(&c);
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", c->n);
    }
    ops->init(&cfg->layout, c->global, cfg->model_seed);
    c->phase = COORD_WAITING;
    c->next_version = 1;
    c->seq = cfg->seq_base;
    *out = c;
    return GDML_OK;
}

void gdml_coord_destroy(gdml_coord **cp)
{
    if (!cp || !*cp)
        return;
    gdml_coord *c = *cp;
    *cp = NULL;
    for (size_t i = 0; c->slots && i < c->members.used; i++)
        coord_slot_fini(&c->slots[i]);
    free(c->slots);
    gdml_members_fini(&c->members);
    gdml_ratelog_destroy(&c->log);
    gdml_merge_destroy(&c->merge);
    gdml_actions_fini(&c->actions);
    free(c->global);
    free(c->next);
    free(c->state_backup);
    free(c);
}

gdml_err gdml_coord_resume(gdml_coord *c, const gdml_version_meta *meta, uint64_t newest,
                           const float *params, size_t n, const float *state, size_t n_state,
                           gdml_errmsg *e)
{
    size_t want_state = 0;
    float *mine = gdml_merge_state(c->merge, &want_state);
    if (n != c->n)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %llu has %zu parameters; [model] %s has %zu",
                               (unsigned long long)meta->version, n, c->layout_text, c->n);
    if (strcmp(meta->rule, gdml_merge_rule(c->merge)) != 0 || n_state != want_state)
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "version %llu was merged with rule '%s', but [merge] rule is '%s': "
                               "resuming would change the optimizer; set [merge] rule = %s, or "
                               "start a new store",
                               (unsigned long long)meta->version, meta->rule,
                               gdml_merge_rule(c->merge), meta->rule);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(params[i]))
            return gdml_errmsg_set(e, GDML_ERR_INVALID,
                                   "version %llu has a parameter that is not finite (index %zu); "
                                   "roll back to an earlier version",
                                   (unsigned long long)meta->version, i);
    memcpy(c->global, params, n * sizeof(float));
    if (n_state)
        memcpy(mine, state, n_state * sizeof(float));
    c->version = meta->version;
    c->round = meta->round;
    c->dp_base = meta->round; /* every region, at most one delta a round (sync) */
    c->next_version = (newest > meta->version ? newest : meta->version) + 1;
    if (meta->seq > c->seq)
        c->seq = meta->seq;
    c->lr_steps = meta->lr_steps;
    c->resumed = true;
    for (uint32_t i = 0; i < meta->n_regions; i++) {
        const gdml_region_part *p = &meta->regions[i];
        if (!gdml_members_allowed(&c->members, p->name))
            continue;
        int s = gdml_members_find(&c->members, p->name);
        if (s < 0)
            s = gdml_members_add(&c->members, p->name);
        if (s >= 0)
            c->slots[s].merged_seq = p->seq; /* the slot is filled in when it joins */
    }
    return GDML_OK;
}

void gdml_coord_start(gdml_coord *c, int64_t now)
{
    c->progress_ms = c->stall_log_ms = now;
    if (c->round >= c->cfg->rounds)
        coord_finish(c, now, 0, GDML_OK, "training complete");
}

/* ---- HELLO ---- */

static void on_hello(gdml_coord *c, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    const char *name = rx->name;
    if (!gdml_members_allowed(&c->members, name)) {
        reject(c, now, rx, GDML_REASON_NOT_ALLOWED, true,
               "'%s' is not one of the regions this coordinator serves", name);
        return;
    }
    if (h->count == 0 || h->count > c->cfg->max_samples) {
        reject(c, now, rx, GDML_REASON_BOUNDS, true,
               "HELLO declares %llu samples; allowed 1..%llu (coordinator.max_samples)",
               (unsigned long long)h->count, (unsigned long long)c->cfg->max_samples);
        return;
    }
    if (*h->text && strcmp(h->text, c->layout_text) != 0) {
        reject(c, now, rx, GDML_REASON_LAYOUT, true,
               "the region holds a '%s' model; this coordinator trains '%s'", h->text,
               c->layout_text);
        return;
    }
    int i = gdml_members_find(&c->members, name);
    bool known = i >= 0 && c->slots[i].down != NULL;
    if (i < 0 && (i = gdml_members_add(&c->members, name)) < 0) {
        reject(c, now, rx, GDML_REASON_NOT_ALLOWED, true,
               "all %zu region slots are taken; restart the coordinator with a larger "
               "coordinator.regions to add '%s'",
               c->members.cap, name);
        return;
    }
    gdml_member *m = &c->members.slots[i];
    coord_slot *s = &c->slots[i];
    if (!known) {
        gdml_errmsg why;
        if (coord_slot_init(c, s, m->name, i, &why)) {
            reject(c, now, rx, GDML_REASON_BOUNDS, true, "%s", why.text);
            return;
        }
    }
    gdml_errmsg why;
    if (coord_down_budget(c, s, h, now, &why)) {
        /* A budget under which nothing useful could ever reach it: it has not
         * joined, and a slot made for it is given back. */
        reject(c, now, rx, GDML_REASON_BUDGET, true, "%s", why.text);
        if (!known && m->state == GDML_MEMBER_FREE) {
            coord_slot_fini(s);
            if ((size_t)i == c->members.used - 1 && s->merged_seq == 0)
                c->members.used--;
        }
        return;
    }
    gdml_wan_note_received(s->down, h->type, rx->wire_bytes, now);
    bool same = m->state == GDML_MEMBER_JOINED && gdml_peer_eq(&m->route, &rx->peer);
    if (same && s->pending == GDML_MSG_WELCOME) {
        /* A repeated HELLO while its WELCOME waits changes nothing. */
        c->stats.rejected[GDML_REASON_DUPLICATE]++;
        return;
    }
    bool first = m->state == GDML_MEMBER_FREE;
    m->route = rx->peer;
    m->samples = h->count;
    m->heard_ms = now;
    if (first || m->state != GDML_MEMBER_JOINED)
        m->joined_ms = now;
    m->state = GDML_MEMBER_JOINED;
    /* A delta already in for this round stays: a HELLO loses no work. */
    if (first && s->merged_seq == 0) {
        c->stats.joins++;
        gdml_info("region_join", "region=%s samples=%llu joined=%zu regions=%u", name,
                  (unsigned long long)h->count, gdml_members_count(&c->members, GDML_MEMBER_JOINED),
                  c->cfg->regions);
    } else {
        c->stats.rejoins++;
    }
    if (!first && *h->text && h->version == s->view_version && s->pending != GDML_MSG_WELCOME) {
        /* It holds what it was last sent (its HELLO names the layout only
         * once it holds a model: a partition, a reconnect, or more samples
         * to declare): what it lacks since, through its downlink, not the
         * whole model. */
        if (h->version == c->version)
            gdml_info("region_rejoin", "region=%s holds=%llu samples=%llu newest=yes", name,
                      (unsigned long long)h->version, (unsigned long long)h->count);
        else
            gdml_info("region_rejoin", "region=%s holds=%llu sending=%llu", name,
                      (unsigned long long)h->version, (unsigned long long)c->version);
        if (h->version < c->version) {
            s->pending = GDML_MSG_GLOBAL;
            s->retry_ms = now;
            coord_flush_down(c, now);
        }
    } else {
        if (!first)
            gdml_info("region_rejoin", "region=%s holds=%llu sending=%llu", name,
                      (unsigned long long)h->version, (unsigned long long)c->version);
        coord_welcome(c, s, now);
    }
    if (c->phase == COORD_WAITING &&
        gdml_members_count(&c->members, GDML_MEMBER_JOINED) >= c->cfg->regions) {
        c->phase = COORD_COLLECTING;
        c->progress_ms = now;
        gdml_info("round_start", "round=%llu regions=%u", (unsigned long long)c->round + 1,
                  c->cfg->regions);
        coord_try_merge(c, now);
    }
}

/* ---- DELTA ---- */

/* Region i's delta of this round was refused: the round goes on without it,
 * and a re-send of the same delta is ignored. It gets the next GLOBAL. */
static void excuse(gdml_coord *c, int64_t now, int i, const gdml_msg_header *h)
{
    coord_slot *s = &c->slots[i];
    s->excused = true;
    s->has_delta = false;
    if (h->seq > s->merged_seq)
        s->merged_seq = h->seq;
    gdml_transfer_reset(&s->in);
    c->stats.contributions_dropped++;
    coord_try_merge(c, now);
}

static double l2(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* The held-out score a whole delta of region i carried, if it is one the
 * region may send; else none, counted out of bounds. Metrics only: the
 * delta is merged either way. */
static gdml_score delta_score(gdml_coord *c, int64_t now, int i, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    const gdml_member *m = &c->members.slots[i];
    if (gdml_score_ok(&h->val, m->samples))
        return h->val;
    /* A worker holds out at most half its shard: an honest region's rows
     * are never more than the samples it declared. */
    reject(c, now, rx, GDML_REASON_BOUNDS, false,
           "held-out score of %llu rows, more than the %llu samples its HELLO declared; the "
           "score is ignored, the delta merged",
           (unsigned long long)h->val.rows, (unsigned long long)m->samples);
    return (gdml_score){0};
}

static void on_delta(gdml_coord *c, int64_t now, int i, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    coord_slot *s = &c->slots[i];
    gdml_member *m = &c->members.slots[i];
    if (c->phase == COORD_FINISHING)
        return;
    if (h->seq <= s->merged_seq) {
        c->stats.rejected[GDML_REASON_DUPLICATE]++; /* a re-send of what was merged */
        return;
    }
    /* Deltas are taken while the first regions are still joining, too, and
     * up to max_staleness versions behind (weighted down when complete). */
    if (h->version > c->version || c->version - h->version > c->cfg->max_staleness ||
        c->phase == COORD_COMMITTING) {
        reject(c, now, rx, GDML_REASON_STALE, false,
               "delta against version %llu; the current version is %llu%s",
               (unsigned long long)h->version, (unsigned long long)c->version,
               c->phase == COORD_COMMITTING ? " and its merge is being committed"
               : h->version > c->version    ? ""
                                            : " (coordinator.max_staleness)");
        if (h->version < c->version && !s->pending) /* it missed a GLOBAL: send it again */
            s->pending = GDML_MSG_GLOBAL;
        return;
    }
    if (h->count == 0 || h->count > m->samples) {
        reject(c, now, rx, GDML_REASON_BOUNDS, true,
               "delta weighs %llu samples; its HELLO declared %llu", (unsigned long long)h->count,
               (unsigned long long)m->samples);
        excuse(c, now, i, h);
        return;
    }
    if (s->has_delta || s->excused) {
        c->stats.rejected[GDML_REASON_DUPLICATE]++; /* one delta per round */
        return;
    }
    gdml_errmsg why;
    bool complete = false;
    gdml_reason r =
        gdml_tensor_receive(&s->in, h, rx->payload, s->delta, c->n, true, m->name, &complete, &why);
    if (r != GDML_REASON_NONE) {
        if (r == GDML_REASON_DUPLICATE || r == GDML_REASON_STALE) {
            c->stats.rejected[r]++;
        } else {
            reject(c, now, rx, r, true, "%s", why.text);
            excuse(c, now, i, h);
        }
        return;
    }
    if (!complete)
        return;
    s->releases++; /* merged or not, the region has released it */
    double norm = l2(s->delta, c->n);
    if (!(norm <= c->cfg->max_delta_norm)) {
        reject(c, now, rx, GDML_REASON_NORM, true,
               "delta seq %llu has norm %.4g, above merge.max_delta_norm = %.4g; dropped",
               (unsigned long long)h->seq, norm, c->cfg->max_delta_norm);
        excuse(c, now, i, h);
        return;
    }
    /* A delta made tau versions ago is folded in scaled by (1 + tau)^-p. */
    uint64_t tau = c->version - h->version;
    if (tau > 0)
        gdml_sscal(c->n, (float)pow(1.0 + (double)tau, -c->cfg->staleness_power), s->delta);
    gdml_errmsg bwhy;
    if (coord_down_budget(c, s, h, now, &bwhy))
        gdml_ratelog_note(c->log, now, GDML_LOG_WARN, "downlink_budget_kept", m->name,
                          "downlink budget kept", "why=%s", bwhy.text);
    s->has_delta = true;
    coord_follow_policy(c, s, m->name, h);
    s->delta_seq = h->seq;
    s->delta_samples = h->count;
    s->delta_loss = h->metric;
    s->delta_lr_steps = h->lr_steps;
    s->delta_norm = norm;
    s->delta_tau = tau;
    s->delta_val = delta_score(c, now, i, rx);
    s->delta_val_version = h->val_version;
    gdml_debug("delta_received", "region=%s seq=%llu version=%llu samples=%llu norm=%.4g",
               m->name, (unsigned long long)h->seq, (unsigned long long)h->version,
               (unsigned long long)h->count, norm);
    coord_try_merge(c, now);
}

/* ---- the other frames ---- */

void gdml_coord_on_frame(gdml_coord *c, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    if (h->type == GDML_MSG_HELLO) {
        on_hello(c, now, rx);
        return;
    }
    int i = gdml_members_find(&c->members, rx->name);
    if (i < 0 || !gdml_members_route_ok(&c->members, i, &rx->peer)) {
        reject(c, now, rx, GDML_REASON_NOT_MEMBER, true, "send HELLO first");
        return;
    }
    gdml_member *m = &c->members.slots[i];
    coord_slot *s = &c->slots[i];
    gdml_wan_note_received(s->down, h->type, rx->wire_bytes, now);
    m->heard_ms = now;
    if (m->state == GDML_MEMBER_SILENT) {
        m->state = GDML_MEMBER_JOINED;
        gdml_info("region_back", "region=%s", m->name);
    }
    switch (h->type) {
    case GDML_MSG_DELTA:
        on_delta(c, now, i, rx);
        break;
    case GDML_MSG_HEARTBEAT:
        break;
    case GDML_MSG_LEAVE:
        gdml_info("region_leave", "region=%s why=%s", m->name, h->text);
        m->state = GDML_MEMBER_LEFT;
        s->pending = 0;
        coord_try_merge(c, now);
        break;
    case GDML_MSG_ERROR:
        c->stats.rejected[GDML_REASON_NONE]++;
        gdml_ratelog_note(c->log, now, GDML_LOG_WARN, "peer_error", m->name, "reports",
                          "code=%s why=%s", gdml_reason_name(h->code), h->text);
        break;
    default:
        reject(c, now, rx, GDML_REASON_UNEXPECTED, true,
               "the coordinator takes HELLO, DELTA, HEARTBEAT, LEAVE and ERROR");
        break;
    }
}

void gdml_coord_on_refused(gdml_coord *c, int64_t now, const gdml_rx *rx, const char *why)
{
    gdml_reason r = rx->reason < GDML_REASON_COUNT ? rx->reason : GDML_REASON_MALFORMED;
    c->stats.rejected[r]++;
    gdml_ratelog_note(c->log, now, GDML_LOG_WARN, "frame_refused",
                      *rx->name ? rx->name : "?", gdml_reason_name(r), "why=%s", why);
}

void gdml_coord_on_dropped(gdml_coord *c, int64_t now, const gdml_peer *route)
{
    int i = gdml_members_drop_route(&c->members, route);
    if (i < 0)
        return;
    c->stats.rejected[GDML_REASON_SLOW]++;
    gdml_warn("region_slow_reader", "region=%s why=%s", c->members.slots[i].name,
              "it stopped reading what it was sent; dropped it (it may join again)");
    c->slots[i].pending = 0;
    coord_try_merge(c, now);
}

void gdml_coord_on_stop(gdml_coord *c, int64_t now, const char *why)
{
    if (c->phase == COORD_FINISHING)
        return;
    coord_finish(c, now, 130, GDML_ERR_INTERRUPTED, why);
}

bool gdml_coord_next_action(gdml_coord *c, gdml_action *out)
{
    return gdml_actions_pop(&c->actions, out);
}

gdml_version_meta *gdml_coord_pending(gdml_coord *c, const char **layout,
                                      const gdml_store_tensor **tensors, size_t *n_tensors)
{
    *layout = c->layout_text;
    *tensors = c->commit_tensors;
    *n_tensors = c->n_commit_tensors;
    return &c->commit_meta;
}

void gdml_coord_stats_get(const gdml_coord *c, gdml_coord_stats *out)
{
    *out = c->stats;
    out->version = c->version;
}

size_t gdml_coord_region_count(const gdml_coord *c)
{
    return c->members.used;
}

void gdml_coord_region_bytes(const gdml_coord *c, size_t i, const char **name, uint64_t *up,
                             uint64_t *down)
{
    *name = c->members.slots[i].name;
    const gdml_wan *w = c->slots[i].down;
    *up = w ? gdml_wan_bytes_received(w) : 0;
    *down = w ? gdml_wan_bytes_sent(w) : 0;
}

void gdml_coord_region_link(gdml_coord *c, size_t i, int64_t now_ms, double *rate,
                            uint64_t *tokens, uint64_t *staleness)
{
    gdml_wan *w = c->slots[i].down;
    *rate = w ? gdml_wan_budget(w).rate : 0;
    *tokens = w ? gdml_wan_available(w, now_ms) : GDML_BUDGET_UNLIMITED;
    *staleness = c->slots[i].delta_tau;
}

const char *gdml_coord_region_policy(const gdml_coord *c, size_t i)
{
    return c->slots[i].policy;
}

double gdml_coord_train_loss(const gdml_coord *c)
{
    return c->train_loss;
}
