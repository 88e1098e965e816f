/*
 * coord_round.c - the coordinator's rounds and clock: when a round is
 * complete (every region heard from has delivered, or a quorum of them),
 * the merge and the checks that decide whether its result may be
 * committed, what follows a commit, and the timers (heartbeats, silent
 * regions, stalls, the run's timeout, the end of the run).
 */
#include "coord_impl.h"

#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long STOPs may wait for budget at the end before the run ends anyway. */
#define FINISH_GRACE_MS 5000
/* The longest a tick waits when nothing else is due. */
#define TICK_MAX_MS 100

static bool waiting_for(const gdml_coord *c, size_t i)
{
    return c->members.slots[i].state == GDML_MEMBER_JOINED && !c->slots[i].has_delta &&
           !c->slots[i].excused;
}

/* Names who the run is waiting for, for stall lines and the timeout error. */
static void describe_wait(const gdml_coord *c, char *buf, size_t cap)
{
    size_t joined = gdml_members_count(&c->members, GDML_MEMBER_JOINED) +
                    gdml_members_count(&c->members, GDML_MEMBER_SILENT);
    if (c->phase == COORD_WAITING) {
        snprintf(buf, cap, "only %zu of %u regions joined", joined, c->cfg->regions);
        return;
    }
    size_t len = (size_t)snprintf(
        buf, cap, "no delta for version %llu from:", (unsigned long long)c->version);
    bool any = false;
    for (size_t i = 0; i < c->members.used && len < cap; i++)
        if (waiting_for(c, i)) {
            len += (size_t)snprintf(buf + len, cap - len, " '%s'", c->members.slots[i].name);
            any = true;
        }
    if (!any && len < cap)
        snprintf(buf + len, cap - len, " (no region is heard from)");
}

/* Merges the contributors into c->next; false if the result may not be committed. */
static bool merge_into_next(gdml_coord *c, const int *who, size_t count, double *change)
{
    const float *deltas[GDML_STORE_MAX_REGIONS];
    double weights[GDML_STORE_MAX_REGIONS];
    for (size_t j = 0; j < count; j++) {
        deltas[j] = c->slots[who[j]].delta;
        weights[j] = (double)c->slots[who[j]].delta_samples;
    }
    size_t n_state = 0;
    float *state = gdml_merge_state(c->merge, &n_state);
    if (n_state)
        memcpy(c->state_backup, state, n_state * sizeof(float));
    memcpy(c->next, c->global, c->n * sizeof(float));
    gdml_merge_apply(c->merge, c->next, deltas, weights, count);
    double sq = 0;
    bool finite = true;
    for (size_t k = 0; k < c->n && finite; k++) {
        double d = (double)c->next[k] - c->global[k];
        finite = isfinite(c->next[k]);
        sq += d * d;
    }
    *change = sqrt(sq);
    if (finite && *change <= c->cfg->max_change_norm)
        return true;
    if (n_state) /* undo the rule's state too: nothing of this merge happened */
        memcpy(state, c->state_backup, n_state * sizeof(float));
    return false;
}

/* Drops contributor j (the largest delta) from who[0..*count). */
static void drop_largest(gdml_coord *c, int *who, size_t *count, double change, int64_t now)
{
    size_t big = 0;
    for (size_t j = 1; j < *count; j++)
        if (c->slots[who[j]].delta_norm > c->slots[who[big]].delta_norm)
            big = j;
    int i = who[big];
    coord_slot *s = &c->slots[i];
    c->stats.rejected[GDML_REASON_NORM]++;
    c->stats.contributions_dropped++;
    gdml_ratelog_note(c->log, now, GDML_LOG_WARN, "delta_dropped", c->members.slots[i].name,
                      gdml_reason_name(GDML_REASON_NORM),
                      "version=%llu change=%.4g max_change_norm=%.4g norm=%.4g why=%s",
                      (unsigned long long)c->next_version, change, c->cfg->max_change_norm,
                      s->delta_norm,
                      "the version would change by more than merge.max_change_norm or not be "
                      "finite");
    s->has_delta = false;
    s->excused = true;
    s->merged_seq = s->delta_seq; /* a re-send of it is ignored */
    who[big] = who[--*count];
}

static void evaluate(gdml_coord *c, gdml_version_meta *meta, bool last)
{
    meta->accuracy = meta->loss = NAN;
    const gdml_coord_config *cfg = c->cfg;
    if (!cfg->eval || !(last || meta->round % cfg->eval_every == 0))
        return;
    if (gdml_model_evaluate_set(&cfg->layout, c->next, cfg->eval,
                            &meta->accuracy, &meta->loss))
        gdml_warn("eval_failed", "version=%llu", (unsigned long long)meta->version);
}

/* Fills the metadata of the version in c->next; the loop adds time and bytes. */
static void prepare_commit(gdml_coord *c, const int *who, size_t count)
{
    gdml_version_meta *meta = &c->commit_meta;
    memset(meta, 0, sizeof *meta);
    meta->version = c->next_version;
    meta->parent = c->version;
    meta->round = c->round + 1;
    double total = 0, loss = 0, lrh = 0;
    for (size_t j = 0; j < count; j++) {
        const coord_slot *s = &c->slots[who[j]];
        double w = (double)s->delta_samples;
        total += w;
        loss += (isnan(s->delta_loss) ? 0 : s->delta_loss) * w;
        lrh += s->delta_lr_steps * w;
    }
    c->pending_lr_steps = lrh / total;
    c->pending_loss = loss / total;
    meta->seq = c->seq;
    meta->lr_steps = c->pending_lr_steps;
    snprintf(meta->rule, sizeof meta->rule, "%s", gdml_merge_rule(c->merge));
    for (size_t i = 0; i < c->members.used && meta->n_regions < GDML_STORE_MAX_REGIONS; i++) {
        const coord_slot *s = &c->slots[i];
        gdml_region_part *p = &meta->regions[meta->n_regions++];
        snprintf(p->name, sizeof p->name, "%s", c->members.slots[i].name);
        p->seq = s->has_delta ? s->delta_seq : s->merged_seq;
        p->samples = s->has_delta ? s->delta_samples : 0;
        if (s->has_delta && s->delta_val.rows) {
            p->val = s->delta_val;
            p->val_version = s->delta_val_version;
        }
    }
    if (c->cfg->dp) {
        meta->epsilon = coord_dp_epsilon(c, 0);
        meta->dp_delta = c->cfg->dp->delta;
    }
    evaluate(c, meta, meta->round >= c->cfg->rounds);
    size_t n_state = 0;
    float *state = gdml_merge_state(c->merge, &n_state);
    c->commit_tensors[0] = (gdml_store_tensor){.name = "params", .data = c->next, .n = c->n};
    c->n_commit_tensors = 1;
    if (n_state)
        c->commit_tensors[c->n_commit_tensors++] =
            (gdml_store_tensor){.name = "merge_state", .data = state, .n = n_state};
}

void coord_try_merge(gdml_coord *c, int64_t now)
{
    if (c->phase != COORD_COLLECTING)
        return;
    int who[GDML_STORE_MAX_REGIONS];
    size_t count = 0, excused = 0, waiting = 0;
    for (size_t i = 0; i < c->members.used; i++) {
        waiting += waiting_for(c, i);
        if (c->slots[i].has_delta && count < GDML_STORE_MAX_REGIONS)
            who[count++] = (int)i;
        excused += c->slots[i].excused;
    }
    /* sync: every region heard from; quorum and async: that many deltas
     * (fewer if fewer regions are heard from). */
    size_t need = c->cfg->quorum;
    if (waiting > 0 && (need == 0 || count < (need < count + waiting ? need : count + waiting)))
        return;
    double change = 0;
    while (count > 0 && !merge_into_next(c, who, count, &change))
        drop_largest(c, who, &count, change, now);
    excused = 0; /* the drops above excused some more */
    for (size_t i = 0; i < c->members.used; i++)
        excused += c->slots[i].excused;
    if (count == 0) {
        if (excused == 0)
            return; /* nothing in yet */
        /* Every delta of the round was dropped: no new version; each region
         * is sent the current one again and tries anew. */
        for (size_t i = 0; i < c->members.used; i++)
            if (c->slots[i].excused) {
                c->slots[i].excused = false;
                c->slots[i].pending = GDML_MSG_GLOBAL;
                c->slots[i].retry_ms = now;
            }
        coord_flush_down(c, now);
        return;
    }
    prepare_commit(c, who, count);
    c->phase = COORD_COMMITTING;
    gdml_action act = {.kind = GDML_ACT_COMMIT};
    if (gdml_actions_push(&c->actions, &act))
        coord_finish(c, now, 1, GDML_ERR_NOMEM, "out of memory queueing a commit");
}

void gdml_coord_on_committed(gdml_coord *c, int64_t now, gdml_err err, const char *why)
{
    if (c->phase != COORD_COMMITTING)
        return;
    if (err) {
        char text[GDML_ERRMSG_MAX];
        snprintf(text, sizeof text, "cannot commit version %llu: %s",
                 (unsigned long long)c->next_version, why ? why : gdml_strerror(err));
        c->phase = COORD_COLLECTING;
        coord_finish(c, now, 1, err, text);
        return;
    }
    const gdml_version_meta *meta = &c->commit_meta;
    float *t = c->global;
    c->global = c->next;
    c->next = t;
    c->version = meta->version;
    c->next_version = meta->version + 1;
    c->round = meta->round;
    c->lr_steps = c->pending_lr_steps;
    c->train_loss = c->pending_loss;
    c->stats.merges++;
    c->progress_ms = c->stall_log_ms = now;
    c->phase = COORD_COLLECTING;
    for (size_t i = 0; i < c->members.used; i++) {
        coord_slot *s = &c->slots[i];
        gdml_member_state st = c->members.slots[i].state;
        if (s->has_delta)
            s->merged_seq = s->delta_seq;
        s->has_delta = s->excused = false;
        gdml_transfer_reset(&s->in);
        if ((st == GDML_MEMBER_JOINED || st == GDML_MEMBER_SILENT) &&
            s->pending != GDML_MSG_WELCOME) { /* a WELCOME still due brings it all */
            s->pending = GDML_MSG_GLOBAL;
            s->retry_ms = now;
        }
    }
    gdml_score val;
    uint32_t scored = gdml_store_meta_score(meta, &val);
    if (GDML_LOG_INFO <= gdml_log_threshold()) {
        gdml_log_line line;
        gdml_log_begin(&line, GDML_LOG_INFO, "commit");
        gdml_log_fields(&line, "version=%llu round=%llu accuracy=%.4f",
                        (unsigned long long)c->version, (unsigned long long)c->round,
                        meta->accuracy);
        if (scored) /* the regions' own held-out score, where they sent one */
            gdml_log_fields(&line, "val_accuracy=%.4f val_regions=%u", gdml_score_accuracy(&val),
                            scored);
        gdml_log_emit(&line);
    }
    if (c->round >= c->cfg->rounds) {
        coord_finish(c, now, 0, GDML_OK, "training complete");
        return;
    }
    if (coord_dp_stop(c, now))
        return;
    coord_flush_down(c, now);
}

/* FINISHING: STOP to every region the budget lets us reach; then EXIT. */
static void flush_stops(gdml_coord *c, int64_t now)
{
    bool waiting = false;
    for (size_t i = 0; i < c->members.used; i++) {
        coord_slot *s = &c->slots[i];
        if (!s->stop_pending)
            continue;
        if (coord_send_control(c, (int)i, GDML_MSG_STOP, c->exit_text, now))
            s->stop_pending = false;
        else
            waiting = true;
    }
    if (waiting && now < c->finish_deadline_ms)
        return;
    if (waiting)
        gdml_warn("stop_undelivered", "grace_s=%d why=%s", FINISH_GRACE_MS / 1000,
                  "some regions' downlink budgets had no room for STOP");
    gdml_action act = {.kind = GDML_ACT_EXIT, .status = c->exit_status, .err = c->exit_err};
    snprintf(act.text, sizeof act.text, "%s", c->exit_text);
    gdml_actions_push(&c->actions, &act);
    c->finish_deadline_ms = INT64_MAX; /* exactly one EXIT */
}

void coord_finish(gdml_coord *c, int64_t now, int status, gdml_err err, const char *why)
{
    if (c->phase == COORD_FINISHING)
        return;
    c->phase = COORD_FINISHING;
    c->exit_status = status;
    c->exit_err = err;
    snprintf(c->exit_text, sizeof c->exit_text, "%s", why);
    c->finish_deadline_ms = now + FINISH_GRACE_MS;
    for (size_t i = 0; i < c->members.used; i++) {
        gdml_member_state st = c->members.slots[i].state;
        c->slots[i].pending = 0;
        c->slots[i].stop_pending = st == GDML_MEMBER_JOINED || st == GDML_MEMBER_SILENT;
    }
    flush_stops(c, now);
}

void gdml_coord_on_tick(gdml_coord *c, int64_t now)
{
    gdml_ratelog_flush(c->log, now);
    if (c->phase == COORD_FINISHING) {
        if (c->finish_deadline_ms != INT64_MAX)
            flush_stops(c, now);
        return;
    }
    coord_flush_down(c, now);
    const gdml_coord_config *cfg = c->cfg;
    for (size_t i = 0; i < c->members.used; i++) {
        gdml_member *m = &c->members.slots[i];
        coord_slot *s = &c->slots[i];
        if (m->state != GDML_MEMBER_JOINED)
            continue;
        if (now - m->heard_ms > cfg->peer_timeout_ms) {
            m->state = GDML_MEMBER_SILENT;
            gdml_warn("region_silent", "region=%s silent_ms=%lld", m->name,
                      (long long)(now - m->heard_ms));
            coord_try_merge(c, now);
        } else if (!s->pending && now - s->sent_ms >= cfg->heartbeat_ms) {
            coord_send_control(c, (int)i, GDML_MSG_HEARTBEAT, NULL, now);
        }
    }
    if (c->phase == COORD_COMMITTING)
        return;
    if (c->phase == COORD_COLLECTING && cfg->round_deadline_ms > 0 &&
        now - c->progress_ms >= cfg->round_deadline_ms) {
        bool any = false;
        for (size_t i = 0; i < c->members.used; i++)
            any |= c->slots[i].has_delta;
        for (size_t i = 0; any && i < c->members.used; i++)
            if (waiting_for(c, i)) {
                gdml_warn("round_deadline", "round=%llu region=%s deadline_ms=%lld",
                          (unsigned long long)c->round + 1, c->members.slots[i].name,
                          (long long)cfg->round_deadline_ms);
                c->slots[i].excused = true;
            }
        if (any)
            coord_try_merge(c, now);
        if (c->phase != COORD_COLLECTING)
            return;
    }
    char what[GDML_ERRMSG_MAX / 2];
    if (now - c->progress_ms > cfg->timeout_ms) {
        describe_wait(c, what, sizeof what);
        char text[GDML_ERRMSG_MAX];
        snprintf(text, sizeof text,
                 "no version committed for %lld ms (%s); check that those regional servers are "
                 "running and can reach this coordinator",
                 (long long)cfg->timeout_ms, what);
        coord_finish(c, now, 3, GDML_ERR_TIMEOUT, text);
        return;
    }
    if (now - c->progress_ms >= cfg->heartbeat_ms && now - c->stall_log_ms >= cfg->heartbeat_ms) {
        describe_wait(c, what, sizeof what);
        gdml_info("waiting", "ms=%lld for=%s", (long long)(now - c->progress_ms), what);
        c->stall_log_ms = now;
    }
}

int64_t gdml_coord_next_timer(const gdml_coord *c, int64_t now)
{
    int64_t wait = TICK_MAX_MS;
    for (size_t i = 0; i < c->members.used; i++) {
        const coord_slot *s = &c->slots[i];
        if (s->pending && s->retry_ms - now < wait)
            wait = s->retry_ms - now;
    }
    return wait < 0 ? 0 : wait;
}
