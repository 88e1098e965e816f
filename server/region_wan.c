/*
 * region_wan.c - the regional server's side facing the coordinator:
 * joining, the model WELCOME brings, when to sync (a table of modes), the
 * delta through the uplink, and folding in GLOBAL.
 *
 * A sync is due every sync_every steps, every sync_ms, or whenever the
 * uplink budget has min_message_bytes free once sync_every steps are done
 * (and then training goes on until it has). In the steps mode a sync the
 * budget does not allow yet holds the workers (HOLDING), so that a round is
 * exactly sync_every steps; in the others training goes on and the sync is
 * tried again after the next step. Deltas go through the uplink (wan.h):
 * encoded, with error feedback, never more than the budget allows.
 *
 * Overlap. Without it the workers wait from the delta to the GLOBAL, a WAN
 * round trip per round. With it they train on: the delta d = x_s - a (the
 * live model x_s when it was made, minus the anchor a) goes out, training
 * moves the live model to x, and when GLOBAL brings the merged model g the
 * live model becomes g + (x - x_s): the merge replaces what the delta
 * carried and keeps what was learned since, which the next delta (against
 * anchor g) carries. At most one delta is in flight: when the next sync
 * comes due before the last one's GLOBAL is in (the round trip is longer
 * than a round of training), the workers wait for it and the next delta
 * goes out at once. So the workers wait only for the part of the round trip
 * a round of training does not cover. The cost is one round of delay in
 * what each region sees of the others.
 */
#include "region_impl.h"

#include "log.h"
#include "tensor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- when to sync ---- */

static bool due_steps(const gdml_region *r, int64_t now)
{
    (void)now;
    return r->steps_since_sync >= r->sync_every;
}

static bool due_time(const gdml_region *r, int64_t now)
{
    return now - r->last_sync_ms >= r->cfg->sync_ms;
}

static bool due_budget(const gdml_region *r, int64_t now)
{
    (void)now;
    /* As soon as the uplink has min_message_bytes free, but not before
     * sync_every steps: a delta of one step would spend the budget on nothing. */
    return r->steps_since_sync >= r->sync_every;
}

bool region_sync_may_end_step(const gdml_region *r)
{
    if (r->cfg->sync->due == due_time)
        return true;
    return r->steps_since_sync + 1 >= r->sync_every;
}

static const gdml_sync_mode sync_modes[] = {
    {.name = "steps", .due = due_steps, .hold = true},
    {.name = "time", .due = due_time, .hold = false},
    {.name = "budget", .due = due_budget, .hold = false},
};

const gdml_sync_mode *gdml_sync_mode_find(const char *name)
{
    for (size_t i = 0; i < sizeof sync_modes / sizeof sync_modes[0]; i++)
        if (strcmp(sync_modes[i].name, name) == 0)
            return &sync_modes[i];
    return NULL;
}

/* ---- joining ---- */

void region_hello(gdml_region *r, int64_t now)
{
    if (region_send_control(r, GDML_LINK_UP, NULL, GDML_MSG_HELLO, GDML_REASON_NONE, NULL, now))
        return; /* no budget now: the tick tries again */
    r->joined_coord = true;
    r->hello_ms = now;
    r->hello_samples = region_samples(r);
}

/* Everything a model of layout text needs; total, unless 0, is the
 * parameter count the WELCOME that named it carries. */
static gdml_err make_model(gdml_region *r, const char *text, uint64_t total, gdml_errmsg *e)
{
    if (gdml_layout_parse(text, &r->layout, e)) {
        gdml_errmsg_prefix(e, "the coordinator's model layout: ");
        return GDML_ERR_PROTO;
    }
    if (!(r->ops = gdml_model_find(r->layout.kind)))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "the coordinator trains a '%s' model, which this build lacks",
                               r->layout.kind);
    size_t n = r->ops->param_count(&r->layout);
    if (total && n != total)
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "WELCOME: layout '%s' has %zu parameters, the "
                               "tensor %llu",
                               text, n, (unsigned long long)total);
    r->params = malloc(n * sizeof(float));
    r->anchor = malloc(n * sizeof(float));
    r->grad_sum = calloc(n, sizeof(float));
    r->scratch = malloc(n * sizeof(float));
    r->chunk_batch = calloc(gdml_chunk_count(n), sizeof(double));
    r->chunk_done = calloc(gdml_chunk_count(n) / 64 + 1, sizeof(uint64_t));
    if (!r->params || !r->anchor || !r->grad_sum || !r->scratch || !r->chunk_batch ||
        !r->chunk_done)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
    if (r->cfg->scaffold &&
        (!(r->c_local = calloc(n, sizeof(float))) || !(r->c_global = calloc(n, sizeof(float)))))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
    if (r->cfg->overlap && !(r->sent = malloc(n * sizeof(float))))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
    gdml_optim_config sgd = {.kind = "sgd"};
    gdml_err err = gdml_optim_new(r->cfg->optim.kind ? &r->cfg->optim : &sgd, n, &r->opt, e);
    if (err)
        return err;
    err = gdml_codec_new("dense", n, 0, &r->dense, e);
    if (!err && r->ops->sparse) {
        err = gdml_codec_new("keys+f32", n, 0, &r->pulled, e);
        r->ent_idx = malloc(GDML_CHUNK_ELEMS * sizeof *r->ent_idx);
        r->ent_val = malloc(GDML_CHUNK_ELEMS * sizeof *r->ent_val);
        r->touched = malloc(n * sizeof *r->touched);
        r->touched_marks = calloc(n / 64 + 1, sizeof *r->touched_marks);
        if (!err && (!r->ent_idx || !r->ent_val || !r->touched || !r->touched_marks))
            err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
    }
    if (err)
        return err;
    /* randk's choices, repeatable per region: a hash of its name (FNV-1a). */
    uint64_t seed = 1469598103934665603ULL;
    for (const char *p = r->cfg->name; *p; p++)
        seed = (seed ^ (unsigned char)*p) * 1099511628211ULL;
    if ((err = gdml_wan_start(r->up, n, seed, e)))
        return err;
    r->n = n;
    if ((err = region_policy_start(r, e)))
        return err;
    if (gdml_transfer_init(&r->from_coord, n))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    r->n = n;
    snprintf(r->layout_text, sizeof r->layout_text, "%s", text);
    return GDML_OK;
}

bool region_start_early(gdml_region *r, int64_t now)
{
    if (!r->cfg->early_layout[0] || r->restored.have)
        return false; /* a checkpoint is applied on the coordinator's model */
    gdml_errmsg e;
    if (make_model(r, r->cfg->early_layout, 0, &e)) {
        region_exit(r, now, 2, GDML_ERR_CONFIG, e.text);
        return false;
    }
    r->ops->init(&r->layout, r->params, r->cfg->early_seed);
    memcpy(r->anchor, r->params, r->n * sizeof(float));
    r->last_sync_ms = now;
    return true;
}

/* Takes a chunk of the tensor WELCOME or GLOBAL carries into r->scratch; true once it is whole. */
static bool take_chunk(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    gdml_errmsg e;
    bool complete = false;
    gdml_reason reason = gdml_tensor_receive(&r->from_coord, &rx->header, rx->payload, r->scratch,
                                             r->n, true, "the coordinator", &complete, &e);
    if (reason != GDML_REASON_NONE)
        region_reject(r, now, GDML_LINK_UP, rx, reason, false, "%s", e.text);
    return complete;
}

/* A WELCOME while training (the coordinator restarted, or it answered a
 * HELLO that told it of more samples): the progress since the last sync, or
 * since the delta in flight, stays on top of the model it sends,
 * x = g + (x - base), and the round goes on. A delta in flight is not waited
 * for: a GLOBAL that answers it is then taken as an update to keep. */
static void rebase(gdml_region *r, int64_t now, const gdml_msg_header *h)
{
    gdml_saxpy(r->n, -1.0f, r->in_flight ? r->sent : r->anchor, r->params);
    r->ops->init(&r->layout, r->anchor, h->count);
    gdml_saxpy(r->n, 1.0f, r->scratch, r->anchor);
    gdml_saxpy(r->n, 1.0f, r->anchor, r->params);
    r->version = h->version;
    r->in_flight = false;
    r->progress_ms = now;
}

/*
 * SCAFFOLD's variates are derived from the deltas, never sent: the global
 * one is minus the merged update over lr * H, which holds only while every
 * region's pair stays consistent with every other's, and the derivation
 * carries any offset it ever takes in on unchanged, round after round, in
 * every region (docs/consistency.md). So a region whose GLOBALs stop being
 * one merge round each takes none in: after a trained model that arrives
 * whole in a WELCOME (the GLOBALs after it pay off its quantization error),
 * a GLOBAL spanning rounds it missed, or one that does not answer its delta
 * (asynchronous merging), it trains without correction for
 * REGION_SCAFFOLD_PAUSE clean rounds, its own variate still derived (it is
 * exact: minus its uncorrected update over lr * H), and then takes the
 * global one from the next GLOBAL.
 */
static void scaffold_pause(gdml_region *r, const char *why)
{
    if (!r->scaffold_wait)
        gdml_info("scaffold_paused", "why=%s rounds=%d", why, REGION_SCAFFOLD_PAUSE);
    memset(r->c_global, 0, r->n * sizeof(float));
    r->scaffold_wait = REGION_SCAFFOLD_PAUSE;
}

/* A GLOBAL's part in the global control variate (see scaffold_pause). */
static void scaffold_on_global(gdml_region *r, const gdml_msg_header *h, bool awaited)
{
    if (h->version != r->version + 1) {
        scaffold_pause(r, "a GLOBAL that spans other than one round");
        return;
    }
    if (!awaited) { /* asynchronous merging: another region's delta, merged alone */
        scaffold_pause(r, "a GLOBAL that does not answer this region's delta");
        return;
    }
    if (h->lr_steps <=
        0) { /* after another region's catch-up, or a merge rule that does not average */
        scaffold_pause(r, "a GLOBAL without lr x H from the coordinator");
        return;
    }
    if (r->scaffold_wait) {
        if (--r->scaffold_wait)
            return;
        gdml_info("scaffold_resumed", "version=%llu", (unsigned long long)h->version);
    }
    /* With every region in every round, the global control variate, the
     * sample-weighted mean of the regions', is minus the merged update over
     * lr * H, the regions' mean of which GLOBAL carries. A sparse downlink
     * delivers each entry about every 1/f rounds as a lump (error feedback
     * keeps the rest), so average over rounds with weight f, the fraction
     * of entries this GLOBAL carried: per entry the mean is still the
     * gradient, and a dense downlink (f = 1) gives it exactly. */
    size_t sent = 0;
    for (size_t i = 0; i < r->n; i++)
        sent += r->scratch[i] != 0;
    float f = (float)sent / (float)r->n;
    gdml_sscal(r->n, 1.0f - f, r->c_global);
    gdml_saxpy(r->n, (float)(-f / h->lr_steps), r->scratch, r->c_global);
}

/* A chunk of WELCOME: the global model as a change from the initial model of seed count. */
static void on_welcome(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    gdml_errmsg e;
    if (r->n == 0 && make_model(r, h->text, h->total, &e)) {
        /* The coordinator trains what this region cannot: no amount of
         * waiting changes that. */
        region_exit(r, now, 1, GDML_ERR_PROTO, e.text);
        return;
    }
    if (!r->welcomed && strcmp(h->text, r->layout_text) != 0) {
        char why[GDML_ERRMSG_MAX];
        snprintf(why, sizeof why,
                 "the coordinator trains '%.100s', but this server started early on '%.100s', its "
                 "[model] section: give every program the job's [model] section, or set "
                 "server.early_start = off",
                 h->text, r->layout_text);
        region_exit(r, now, 2, GDML_ERR_CONFIG, why);
        return;
    }
    if (strcmp(h->text, r->layout_text) != 0) {
        region_reject(r, now, GDML_LINK_UP, rx, GDML_REASON_LAYOUT, false,
                      "the coordinator now trains '%s', not '%s'", h->text, r->layout_text);
        return;
    }
    if (!take_chunk(r, now, rx))
        return;
    gdml_info("welcome", "version=%llu text=%s", (unsigned long long)h->version, h->text);
    if (r->c_local && h->version > 0)
        scaffold_pause(r, "a trained model in a WELCOME");
    bool early = !r->welcomed;
    r->welcomed = true;
    if (early && r->state != REGION_JOINING) {
        if (h->version == 0 && h->count == r->cfg->early_seed) {
            /* Started early from this very model: the steps trained since
             * stay on top of it, and a sync that waited for it goes now. */
            gdml_info("early_steps_kept", "steps=%llu", (unsigned long long)r->steps_since_sync);
            rebase(r, now, h);
            if (r->state == REGION_SYNCING) {
                r->state = REGION_TRAINING;
                region_after_step(r, now);
            }
            return;
        }
        /* A trained model (a resumed job), or another initial one: steps
         * taken from [model]'s initial parameters say nothing about it. */
        gdml_info("early_steps_dropped", "steps=%llu version=%llu",
                  (unsigned long long)r->steps_since_sync, (unsigned long long)h->version);
    }
    if (!early && r->state == REGION_TRAINING) {
        rebase(r, now, h);
        return;
    }
    /* Nothing is trained on until the model is whole. */
    r->ops->init(&r->layout, r->params, h->count);
    gdml_saxpy(r->n, 1.0f, r->scratch, r->params);
    memcpy(r->anchor, r->params, r->n * sizeof(float));
    r->version = h->version;
    r->steps_since_sync = 0;
    r->in_flight = false;
    r->last_sync_ms = r->progress_ms = now;
    region_apply_restored(r, now); /* a restarted region's own progress, on top */
    if (r->state == REGION_SYNCING || r->state == REGION_HOLDING) {
        /* Joined again (the coordinator restarted): start the round afresh. */
        r->state = REGION_TRAINING;
        region_broadcast(r, now);
        return;
    }
    region_maybe_start(r, now);
}

/* A chunk of GLOBAL: how the global model changed since this region's view of it. */
static void on_global(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    if (r->n == 0) {
        region_reject(r, now, GDML_LINK_UP, rx, GDML_REASON_UNEXPECTED, false,
                      "GLOBAL before WELCOME");
        return;
    }
    if (!take_chunk(r, now, rx))
        return;
    bool awaited = r->in_flight || r->state == REGION_SYNCING; /* the answer to its delta */
    gdml_saxpy(r->n, 1.0f, r->scratch, r->anchor);
    if (r->in_flight) {
        /* Overlap: the merge replaces what the delta carried (x_s - a), the
         * progress since (x - x_s) stays: x = g + (x - x_s). */
        gdml_saxpy(r->n, -1.0f, r->sent, r->params);
        gdml_saxpy(r->n, 1.0f, r->anchor, r->params);
    } else if (r->state == REGION_SYNCING) {
        memcpy(r->params, r->anchor, r->n * sizeof(float));
    } else { /* a GLOBAL we did not wait for (sent again): keep the local progress */
        gdml_saxpy(r->n, 1.0f, r->scratch, r->params);
    }
    bool answered = r->in_flight;
    r->in_flight = false;
    if (r->c_local)
        scaffold_on_global(r, h, awaited);
    r->version = h->version;
    r->progress_ms = now;
    region_checkpoint(r, now);
    if (r->state == REGION_SYNCING) {
        r->state = REGION_TRAINING;
        if (answered) /* the next sync came due while this one was in flight: it goes now */
            region_after_step(r, now);
        else
            region_broadcast(r, now);
    }
}

void region_on_coordinator(gdml_region *r, int64_t now, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    gdml_wan_note_received(r->up, h->type, rx->wire_bytes, now);
    r->coord_heard_ms = now;
    if (h->type != GDML_MSG_HEARTBEAT)
        region_stream_cancel(r); /* what it says may change the model mid-step */
    switch (h->type) {
    case GDML_MSG_WELCOME:
        on_welcome(r, now, rx);
        break;
    case GDML_MSG_GLOBAL:
        on_global(r, now, rx);
        break;
    case GDML_MSG_HEARTBEAT:
        break;
    case GDML_MSG_STOP: {
        gdml_info("stop", "why=%s steps=%llu syncs=%llu", h->text, (unsigned long long)r->step,
                  (unsigned long long)r->syncs);
        /* The coordinator's reason goes on to the workers: "training
         * complete", or why it stopped early (a signal, the privacy limit). */
        region_exit(r, now, 0, GDML_OK, h->text[0] ? h->text : "training complete");
        break;
    }
    case GDML_MSG_ERROR:
        /* Advisory: it says what it refused; only what it asks for changes anything. */
        r->stats.rejected[GDML_REASON_NONE]++;
        gdml_ratelog_note(r->log, now, GDML_LOG_WARN, "peer_error", "coordinator", "refused",
                          "code=%s why=%s", gdml_reason_name(h->code), h->text);
        if (h->code == GDML_REASON_NOT_MEMBER && now - r->hello_ms > r->cfg->heartbeat_ms)
            region_hello(r, now); /* it does not know us (it restarted): join again */
        break;
    default:
        region_reject(r, now, GDML_LINK_UP, rx, GDML_REASON_UNEXPECTED, false,
                      "a regional server takes WELCOME, GLOBAL, HEARTBEAT, STOP and ERROR from "
                      "the coordinator");
        break;
    }
}

/* ---- syncing ---- */

void region_delta_header(const gdml_region *r, gdml_msg_header *h)
{
    gdml_msg_header_init(h, GDML_MSG_DELTA, r->cfg->name);
    h->seq = r->wan_seq + 1;
    h->version = r->version;
    h->step = r->syncs + 1;
    h->count = region_samples(r);
    h->metric = r->loss_weight > 0 ? r->loss_sum / r->loss_weight : NAN;
    h->down_rate = r->cfg->down_rate;
    h->down_cap = r->cfg->down_cap;
    h->lr_steps = region_lr(r) * (double)r->steps_since_sync;
    region_score(r, &h->val, &h->val_version);
    if (r->cfg->dp)
        region_dp_scrub(h);
}

/* Sends this round's delta if the budget allows; *sent says if it did. */
static void try_sync(gdml_region *r, int64_t now, bool *sent)
{
    *sent = false;
    gdml_ssub(r->n, r->params, r->anchor, r->scratch);
    if (r->cfg->dp && !region_privatize(r, now))
        return;
    gdml_msg_header h;
    region_delta_header(r, &h);
    if (h.count > r->hello_samples)
        h.count = r->hello_samples; /* what the coordinator was told; more follows a HELLO */
    region_policy_before_sync(r, now, &h);
    gdml_wan_update u;
    gdml_errmsg e;
    gdml_err err = gdml_wan_encode_update(r->up, &h, r->scratch, r->params, NULL, now, &u, &e);
    if (err == GDML_ERR_AGAIN) {
        int64_t wait = gdml_wan_wait_ms(r->up, &h, now, &e);
        if (wait < 0) {
            region_exit(r, now, 2, GDML_ERR_CONFIG, e.text);
            return;
        }
        r->hold_until_ms = now + wait;
        return;
    }
    if (err) {
        /* A model that is not finite cannot be sent: start the round again from the anchor. */
        gdml_error("delta_send_failed", "why=%s restart_from=%llu", e.text,
                   (unsigned long long)r->version);
        memcpy(r->params, r->anchor, r->n * sizeof(float));
        r->steps_since_sync = 0;
        return;
    }
    for (size_t f = 0; f < u.n_frames; f++)
        gdml_actions_send(&r->actions, GDML_LINK_UP, NULL, u.frames[f]);
    region_policy_after_sync(r, &u);
    gdml_wan_update_fini(&u);
    r->wan_seq++;
    r->delta_seq = h.seq;
    r->syncs++;
    r->coord_sent_ms = now;
    if (r->c_local && h.lr_steps > 0) {
        /* SCAFFOLD option II: the round moved the model by -lr * H * (g - c_l + c_g),
         * so the local mean gradient g is c_l - c_g - u / (lr * H); uncorrected
         * (scaffold_pause), by -lr * H * g. */
        if (r->scaffold_wait)
            gdml_szero(r->n, r->c_local);
        else
            gdml_saxpy(r->n, -1.0f, r->c_global, r->c_local);
        gdml_saxpy(r->n, (float)(-1.0 / h.lr_steps), r->scratch, r->c_local);
    }
    gdml_debug("delta_sent", "seq=%llu step=%llu version=%llu entries=%zu train_loss=%.4f",
               (unsigned long long)h.seq, (unsigned long long)r->step,
               (unsigned long long)r->version, u.k, h.metric);
    r->loss_sum = r->loss_weight = 0;
    r->steps_since_sync = 0;
    r->last_sync_ms = now;
    if (r->cfg->overlap) {
        memcpy(r->sent, r->params, r->n * sizeof(float));
        r->in_flight = true;
        r->state = REGION_TRAINING; /* the workers train on */
    } else {
        r->state = REGION_SYNCING;
    }
    region_checkpoint(r, now);
    *sent = true;
}

void region_after_step(gdml_region *r, int64_t now)
{
    if (r->cfg->sync->due(r, now) && (r->in_flight || !r->welcomed)) {
        /* Overlap: one delta at a time. The next is due before the last one's
         * GLOBAL is in (the round trip is longer than a round of training):
         * the workers wait for it, so that every round is sync_every steps.
         * Early start: the first delta waits for the coordinator's model. */
        r->state = REGION_SYNCING;
        return;
    }
    if (r->cfg->sync->due(r, now)) {
        bool sent;
        try_sync(r, now, &sent);
        if (r->state == REGION_DONE || (sent && !r->cfg->overlap))
            return;
        if (!sent && r->cfg->sync->hold) {
            gdml_debug("holding", "step=%llu for_ms=%lld", (unsigned long long)r->step,
                       (long long)(r->hold_until_ms - now));
            r->state = REGION_HOLDING;
            return;
        }
    }
    region_broadcast(r, now);
}

void region_retry_hold(gdml_region *r, int64_t now)
{
    if (now < r->hold_until_ms)
        return;
    bool sent;
    try_sync(r, now, &sent);
    if (sent && r->cfg->overlap)
        region_broadcast(r, now); /* the workers waited in HOLDING */
    r->progress_ms = now;         /* waiting for the budget is progress, not a silent peer */
}
