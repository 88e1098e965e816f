/*
 * region.c - the regional parameter server's event loop.
 *
 * One thread, two sockets: a ROUTER bound for the data center's workers (LAN)
 * and a DEALER connected to the coordinator (WAN), polled together. States:
 *
 *   JOINING   waiting for the coordinator's WELCOME (the global model) and a
 *             HELLO from every expected worker; then WELCOME to each worker.
 *   TRAINING  collecting one PUSH per worker for the current step; when all
 *             are in, SGD on their sample-weighted mean gradient, then MODEL
 *             to every worker, or, when a sync is due, DELTA to the coordinator.
 *   HOLDING   in sync_mode "steps", a sync is due but the uplink budget does
 *             not allow the delta yet: the workers wait with it, so that a
 *             round is exactly sync_every steps (more would only add drift).
 *   SYNCING   waiting for GLOBAL, the change of the global model since this
 *             region's view of it; the view becomes the live model and the
 *             anchor the next delta is measured from; then MODEL to workers.
 *   DONE      the coordinator said STOP; every worker is told STOP too.
 *
 * A sync is due every sync_every steps, every sync_ms, or whenever the uplink
 * budget has min_message_bytes free (server.sync_mode). In the time and budget
 * modes a sync the budget does not allow yet is put off and training goes on.
 * Deltas go through the uplink (wan.h): encoded, with error feedback, and
 * never more than [budget] allows. SIGHUP reloads [budget] without losing the
 * link's history or residual. Workers waiting for MODEL simply wait through
 * HOLDING and SYNCING, which is what makes the two levels bulk-synchronous.
 */
#include "region.h"

#include "codec.h"
#include "inbox.h"
#include "log.h"
#include "model.h"
#include "payload.h"
#include "program.h"
#include "tensor.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 200
#define SEND_TIMEOUT_MS 5000
#define MAX_WORKERS 1024
#define MAX_BATCH 65536 /* worker.batch_size's bound */

typedef enum region_state { JOINING, TRAINING, HOLDING, SYNCING, DONE } region_state;

typedef struct worker_slot {
    char name[GDML_NAME_MAX];
    gdml_peer peer;
    uint64_t samples;   /* size of the worker's shard, from its HELLO */
    bool pushed;        /* its gradient for the current step is in */
    bool needs_welcome; /* it (re)joined mid-training: its next model comes as WELCOME */
} worker_slot;

typedef struct region {
    const gdml_config *cfg;
    const char *name;
    gdml_transport *transport;
    gdml_link *lan, *wan;
    region_state state;
    gdml_layout layout;
    char layout_text[GDML_MSG_TEXT_MAX];
    size_t n_params;
    float *params;    /* the live model */
    float *anchor;    /* the global model the current round started from */
    float *grad_sum;  /* sum over this step's pushes of batch * gradient */
    float *scratch;   /* one received tensor, checked before use */
    uint64_t version; /* global version of the anchor */
    uint64_t step;    /* local steps done */
    uint64_t wan_seq, lan_seq;
    uint64_t syncs; /* deltas sent */
    worker_slot workers[MAX_WORKERS];
    int n_workers, n_pushed;
    double batch_sum;             /* samples in this step's pushes */
    double loss_sum, loss_weight; /* training loss since the last sync */
    int64_t last_progress_ms;
    gdml_wan *up;                 /* the uplink: budget, encoder, residual, byte counts */
    FILE *byte_log;               /* server.byte_log, or NULL */
    uint64_t down_rate, down_cap; /* the downlink budget asked of the coordinator */
    uint64_t steps_since_sync;
    int64_t last_sync_ms;
    int64_t hold_wait_ms; /* HOLDING: until the uplink budget allows the delta */
    /* SCAFFOLD control variates (server.drift_correction): the region's and the
     * global mean gradient of the last round. */
    float *c_local, *c_global;
} region;

static worker_slot *find_worker(region *r, const char *name)
{
    for (int i = 0; i < r->n_workers; i++)
        if (strcmp(r->workers[i].name, name) == 0)
            return &r->workers[i];
    return NULL;
}

static uint64_t region_samples(const region *r)
{
    uint64_t n = 0;
    for (int i = 0; i < r->n_workers; i++)
        n += r->workers[i].samples;
    return n;
}

static void send_to_worker(region *r, const worker_slot *w, gdml_msg_type type, gdml_blob *model,
                           const char *text)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, r->name);
    h.seq = ++r->lan_seq;
    h.version = r->version;
    h.step = r->step;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_errmsg e;
    gdml_err err = model ? gdml_payload_send_f32(r->lan, &w->peer, &h, model, SEND_TIMEOUT_MS, &e)
                         : gdml_link_send(r->lan, &w->peer, &h, NULL, 0, SEND_TIMEOUT_MS, &e);
    if (err)
        gdml_warn("cannot send %s to worker '%s': %s", gdml_msg_type_name(type), w->name, e.text);
}

/*
 * Sends the live model to workers[0..n) as one shared, immutable snapshot:
 * as `type`, or as WELCOME (with the layout) to a worker that needs one.
 */
static gdml_err send_model(region *r, worker_slot *workers, int n, gdml_msg_type type,
                           gdml_errmsg *e)
{
    gdml_blob *snapshot;
    if (gdml_payload_blob_f32(r->params, r->n_params, &snapshot))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a model snapshot");
    for (int i = 0; i < n; i++) {
        worker_slot *w = &workers[i];
        gdml_msg_type t = w->needs_welcome ? GDML_MSG_WELCOME : type;
        send_to_worker(r, w, t, snapshot, t == GDML_MSG_WELCOME ? r->layout_text : NULL);
        w->needs_welcome = false;
    }
    gdml_blob_unref(&snapshot);
    return GDML_OK;
}

static gdml_err broadcast_model(region *r, gdml_msg_type type, gdml_errmsg *e)
{
    return send_model(r, r->workers, r->n_workers, type, e);
}

static void stop_workers(region *r, const char *why)
{
    for (int i = 0; i < r->n_workers; i++)
        send_to_worker(r, &r->workers[i], GDML_MSG_STOP, NULL, why);
}

static void refuse_worker(region *r, const gdml_rx *rx, const char *why)
{
    char who[GDML_PEER_ID_MAX * 4 + 1];
    gdml_warn("refused %s from worker '%s': %s", gdml_msg_type_name(rx->header.type),
              gdml_peer_str(&rx->peer, who, sizeof who), why);
    worker_slot tmp = {.peer = rx->peer};
    snprintf(tmp.name, sizeof tmp.name, "%s", rx->header.sender);
    send_to_worker(r, &tmp, GDML_MSG_ERROR, NULL, why);
}

static gdml_err maybe_start(region *r, gdml_errmsg *e)
{
    if (r->state != JOINING || r->n_params == 0 || r->n_workers < r->cfg->server.workers)
        return GDML_OK;
    gdml_info("all %d workers joined (%llu samples); training from version %llu", r->n_workers,
              (unsigned long long)region_samples(r), (unsigned long long)r->version);
    r->state = TRAINING;
    return broadcast_model(r, GDML_MSG_WELCOME, e);
}

static gdml_err on_worker_hello(region *r, const gdml_rx *rx, gdml_errmsg *e)
{
    worker_slot *w = find_worker(r, rx->header.sender);
    if (!w) {
        if (r->n_workers == r->cfg->server.workers) {
            char why[GDML_MSG_TEXT_MAX];
            snprintf(why, sizeof why,
                     "region '%s' expects %d workers and all have joined; restart its server "
                     "with a larger --workers to add '%s'",
                     r->name, r->n_workers, rx->header.sender);
            refuse_worker(r, rx, why);
            return GDML_OK;
        }
        if (rx->header.count == 0) {
            refuse_worker(r, rx, "HELLO must carry the number of samples the worker holds");
            return GDML_OK;
        }
        w = &r->workers[r->n_workers++];
        snprintf(w->name, sizeof w->name, "%s", rx->header.sender);
        gdml_info("worker '%s' joined with %llu samples (%d of %lld)", w->name,
                  (unsigned long long)rx->header.count, r->n_workers,
                  (long long)r->cfg->server.workers);
    } else {
        gdml_info("worker '%s' joined again", w->name);
    }
    w->peer = rx->peer;
    w->samples = rx->header.count;
    r->last_progress_ms = gdml_now_ms();
    if (r->state == JOINING)
        return maybe_start(r, e);
    /* A worker that restarted mid-training needs the layout and the live model:
     * at once if the current step is waiting for its gradient, otherwise with
     * the next model everyone gets (a step or a sync later). */
    if (r->state != TRAINING || w->pushed) {
        w->needs_welcome = true;
        return GDML_OK;
    }
    return send_model(r, w, 1, GDML_MSG_WELCOME, e);
}

static bool sync_due(const region *r, int64_t now)
{
    const char *mode = r->cfg->server.sync_mode;
    if (strcmp(mode, "time") == 0)
        return now - r->last_sync_ms >= r->cfg->server.sync_ms;
    if (strcmp(mode, "budget") == 0)
        return true; /* as soon as the uplink has min_message_bytes free */
    return r->steps_since_sync >= (uint64_t)r->cfg->server.sync_every;
}

/* The local learning rate of the current round (it decays per global version). */
static double round_lr(const region *r)
{
    return r->cfg->server.learning_rate * pow(r->cfg->server.lr_decay, (double)r->version);
}

/* The header of the next DELTA. */
static void delta_header(const region *r, gdml_msg_header *h)
{
    gdml_msg_header_init(h, GDML_MSG_DELTA, r->name);
    h->seq = r->wan_seq + 1;
    h->version = r->version;
    h->step = r->syncs + 1;
    h->count = region_samples(r);
    h->metric = r->loss_weight > 0 ? r->loss_sum / r->loss_weight : 0;
    h->down_rate = r->down_rate;
    h->down_cap = r->down_cap;
    h->lr_steps = round_lr(r) * (double)r->steps_since_sync;
}

/*
 * Sends the coordinator this round's delta (live model minus anchor) through
 * the uplink. Sets *sent; when the budget does not allow a useful message yet
 * nothing is sent (the caller holds or trains on).
 */
static gdml_err try_sync(region *r, bool *sent, gdml_errmsg *e)
{
    *sent = false;
    int64_t now = gdml_now_ms();
    gdml_ssub(r->n_params, r->params, r->anchor, r->scratch);
    gdml_msg_header h;
    delta_header(r, &h);
    size_t k = 0;
    gdml_err err =
        gdml_wan_send_update(r->up, r->wan, NULL, &h, r->scratch, r->params, NULL, now, &k, e);
    if (err == GDML_ERR_AGAIN) {
        if ((r->hold_wait_ms = gdml_wan_wait_ms(r->up, &h, now, e)) < 0)
            return GDML_ERR_CONFIG;
        return GDML_OK;
    }
    if (err) {
        gdml_errmsg_prefix(e, "cannot send the delta to the coordinator: ");
        return err;
    }
    r->wan_seq++;
    r->syncs++;
    if (r->c_local) {
        /* SCAFFOLD option II: the round moved the model by -lr * H * (g - c_l + c_g),
         * so the local mean gradient g is c_l - c_g - u / (lr * H). */
        gdml_saxpy(r->n_params, -1.0f, r->c_global, r->c_local);
        gdml_saxpy(r->n_params, (float)(-1.0 / h.lr_steps), r->scratch, r->c_local);
    }
    gdml_debug("delta %llu sent at step %llu (version %llu, %zu entries, train loss %.4f)",
               (unsigned long long)h.seq, (unsigned long long)r->step,
               (unsigned long long)r->version, k, h.metric);
    r->loss_sum = r->loss_weight = 0;
    r->steps_since_sync = 0;
    r->last_sync_ms = now;
    r->state = SYNCING;
    *sent = true;
    return GDML_OK;
}

/* All gradients of a step are in: average, apply, and move on. */
static gdml_err finish_step(region *r, gdml_errmsg *e)
{
    /* Non-IID regions drift apart at a constant rate; decaying it per global
     * version lets the merged model settle (as FedAvg's convergence needs). */
    float lr = (float)round_lr(r);
    gdml_saxpy(r->n_params, -lr / (float)r->batch_sum, r->grad_sum, r->params);
    if (r->c_local) { /* SCAFFOLD: step along g - c_local + c_global */
        gdml_saxpy(r->n_params, -lr, r->c_global, r->params);
        gdml_saxpy(r->n_params, lr, r->c_local, r->params);
    }
    gdml_szero(r->n_params, r->grad_sum);
    for (int i = 0; i < r->n_workers; i++)
        r->workers[i].pushed = false;
    r->n_pushed = 0;
    r->batch_sum = 0;
    r->step++;
    r->steps_since_sync++;
    if (sync_due(r, gdml_now_ms())) {
        bool sent;
        gdml_err err = try_sync(r, &sent, e);
        if (err || sent)
            return err;
        if (strcmp(r->cfg->server.sync_mode, "steps") == 0) {
            gdml_debug("holding at step %llu: the uplink budget allows the delta in %lld ms",
                       (unsigned long long)r->step, (long long)r->hold_wait_ms);
            r->state = HOLDING;
            return GDML_OK;
        }
    }
    return broadcast_model(r, GDML_MSG_MODEL, e);
}

/* HOLDING: send the delta as soon as the uplink budget allows. */
static gdml_err retry_hold(region *r, gdml_errmsg *e)
{
    bool sent;
    gdml_err err = try_sync(r, &sent, e);
    /* Waiting for the budget is progress, not a silent peer. */
    r->last_progress_ms = gdml_now_ms();
    return err;
}

static gdml_err on_push(region *r, const gdml_rx *rx, gdml_errmsg *e)
{
    worker_slot *w = find_worker(r, rx->header.sender);
    if (!w || !gdml_peer_eq(&w->peer, &rx->peer)) {
        refuse_worker(r, rx, "send HELLO before PUSH");
        return GDML_OK;
    }
    if (r->state != TRAINING || w->pushed || rx->header.step != r->step) {
        char why[GDML_MSG_TEXT_MAX];
        snprintf(why, sizeof why,
                 "gradient for step %llu is not expected now (server at step %llu%s)",
                 (unsigned long long)rx->header.step, (unsigned long long)r->step,
                 w->pushed ? ", this worker's gradient is in already" : "");
        refuse_worker(r, rx, why);
        return GDML_OK;
    }
    if (rx->header.count == 0 || rx->header.count > MAX_BATCH) {
        refuse_worker(r, rx, "PUSH must carry its batch size, 1..65536");
        return GDML_OK;
    }
    gdml_errmsg why;
    if (gdml_payload_read_f32(rx, 0, r->scratch, r->n_params, &why)) {
        refuse_worker(r, rx, why.text);
        return GDML_OK;
    }
    double batch = (double)rx->header.count;
    gdml_saxpy(r->n_params, (float)batch, r->scratch, r->grad_sum);
    r->batch_sum += batch;
    r->loss_sum += rx->header.metric * batch;
    r->loss_weight += batch;
    w->pushed = true;
    r->last_progress_ms = gdml_now_ms();
    if (++r->n_pushed == r->n_workers)
        return finish_step(r, e);
    return GDML_OK;
}

static gdml_err on_lan(region *r, gdml_errmsg *e)
{
    gdml_rx rx;
    gdml_err err = gdml_inbox_recv(r->lan, &rx, 0, "a worker", e);
    if (err)
        return err == GDML_ERR_AGAIN ? GDML_OK : err;
    switch (rx.header.type) {
    case GDML_MSG_HELLO:
        err = on_worker_hello(r, &rx, e);
        break;
    case GDML_MSG_PUSH:
        err = on_push(r, &rx, e);
        break;
    default:
        refuse_worker(r, &rx, "a regional server accepts only HELLO and PUSH from workers");
        break;
    }
    gdml_rx_release(&rx);
    return err;
}

/*
 * WELCOME: the model's layout, and the global model as a change from the
 * initial model of seed header.count, which the region makes itself.
 */
static gdml_err take_welcome(region *r, const gdml_rx *rx, gdml_errmsg *e)
{
    const gdml_model_ops *ops = NULL;
    if (r->n_params == 0) {
        if (gdml_layout_parse(rx->header.text, &r->layout, e)) {
            gdml_errmsg_prefix(e, "the coordinator's model layout: ");
            return GDML_ERR_PROTO;
        }
        ops = gdml_model_find(r->layout.kind);
        if (!ops)
            return gdml_errmsg_set(e, GDML_ERR_PROTO,
                                   "the coordinator trains a '%s' model, which this build lacks",
                                   r->layout.kind);
        size_t n = ops->param_count(&r->layout);
        r->params = malloc(n * sizeof(float));
        r->anchor = malloc(n * sizeof(float));
        r->grad_sum = calloc(n, sizeof(float));
        r->scratch = malloc(n * sizeof(float));
        if (!r->params || !r->anchor || !r->grad_sum || !r->scratch)
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
        r->n_params = n;
        snprintf(r->layout_text, sizeof r->layout_text, "%s", rx->header.text);
        if (strcmp(r->cfg->server.drift_correction, "scaffold") == 0) {
            r->c_local = calloc(n, sizeof(float));
            r->c_global = calloc(n, sizeof(float));
            if (!r->c_local || !r->c_global)
                return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", n);
        }
        /* randk's choices, repeatable per region: a hash of its name (FNV-1a). */
        uint64_t seed = 1469598103934665603ULL;
        for (const char *p = r->name; *p; p++)
            seed = (seed ^ (unsigned char)*p) * 1099511628211ULL;
        gdml_err err = gdml_wan_start(r->up, n, seed, e);
        if (err)
            return err;
    } else if (strcmp(rx->header.text, r->layout_text) != 0) {
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "the coordinator now trains '%s', not '%s'",
                               rx->header.text, r->layout_text);
    } else {
        ops = gdml_model_find(r->layout.kind);
    }
    /* Nothing is trained on until the model is whole: a WELCOME that does not
     * decode ends the region rather than leave it with a model it cannot know. */
    if (gdml_wan_decode(rx, r->scratch, r->n_params, e))
        return GDML_ERR_PROTO;
    ops->init(&r->layout, r->params, rx->header.count);
    gdml_saxpy(r->n_params, 1.0f, r->scratch, r->params);
    memcpy(r->anchor, r->params, r->n_params * sizeof(float));
    r->version = rx->header.version;
    r->last_progress_ms = r->last_sync_ms = gdml_now_ms();
    return GDML_OK;
}

/*
 * GLOBAL: how the global model changed since this region's view of it. The
 * coordinator counts a GLOBAL as delivered, so one that does not decode
 * would leave the two views apart for good: the region stops instead.
 */
static gdml_err take_global(region *r, const gdml_rx *rx, gdml_errmsg *e)
{
    if (gdml_wan_decode(rx, r->scratch, r->n_params, e)) {
        gdml_errmsg_prefix(e, "cannot follow the global model: ");
        return GDML_ERR_PROTO;
    }
    gdml_saxpy(r->n_params, 1.0f, r->scratch, r->anchor);
    memcpy(r->params, r->anchor, r->n_params * sizeof(float));
    if (r->c_local && rx->header.lr_steps > 0) {
        /* With every region in every round, the global control variate, the
         * sample-weighted mean of the regions', is minus the merged update over
         * lr * H, the regions' mean of which GLOBAL carries (regions may take
         * different numbers of steps when their budgets pace them): it comes
         * at the cost of one number in the header. A sparse downlink
         * delivers each entry about every 1/f rounds as a lump (error feedback
         * keeps the rest), so average over rounds with weight f, the fraction
         * of entries this GLOBAL carried: per entry the mean is still the
         * gradient, and a dense downlink (f = 1) gives it exactly. */
        size_t sent = gdml_codec_payload_k(rx->payload[0], rx->payload_size[0]);
        float f = (float)sent / (float)r->n_params;
        gdml_sscal(r->n_params, 1.0f - f, r->c_global);
        gdml_saxpy(r->n_params, (float)(-f / rx->header.lr_steps), r->scratch, r->c_global);
    }
    r->version = rx->header.version;
    r->last_progress_ms = gdml_now_ms();
    return GDML_OK;
}

static gdml_err on_wan(region *r, gdml_errmsg *e)
{
    gdml_rx rx;
    gdml_err err = gdml_inbox_recv(r->wan, &rx, 0, "the coordinator", e);
    if (err)
        return err == GDML_ERR_AGAIN ? GDML_OK : err;
    gdml_wan_note_received(r->up, &rx, gdml_now_ms());
    switch (rx.header.type) {
    case GDML_MSG_WELCOME:
        gdml_info("coordinator sent version %llu (%s)", (unsigned long long)rx.header.version,
                  rx.header.text);
        if (!(err = take_welcome(r, &rx, e)))
            err = maybe_start(r, e);
        break;
    case GDML_MSG_GLOBAL:
        if (r->state != SYNCING) {
            gdml_warn("ignored GLOBAL version %llu: no delta is outstanding",
                      (unsigned long long)rx.header.version);
            break;
        }
        if (!(err = take_global(r, &rx, e))) {
            r->state = TRAINING;
            err = broadcast_model(r, GDML_MSG_MODEL, e);
        }
        break;
    case GDML_MSG_STOP:
        gdml_info("coordinator says stop (%s) after %llu steps, %llu syncs", rx.header.text,
                  (unsigned long long)r->step, (unsigned long long)r->syncs);
        r->state = DONE;
        break;
    case GDML_MSG_ERROR:
        err = gdml_errmsg_set(e, GDML_ERR_PROTO, "the coordinator refused us: %s", rx.header.text);
        break;
    default:
        gdml_warn("ignored %s from the coordinator", gdml_msg_type_name(rx.header.type));
        break;
    }
    gdml_rx_release(&rx);
    return err;
}

static void describe_wait(const region *r, char *buf, size_t cap)
{
    size_t len;
    switch (r->state) {
    case JOINING:
        snprintf(buf, cap, "%s; %d of %lld workers joined",
                 r->n_params ? "the coordinator's model is here" : "no model from the coordinator",
                 r->n_workers, (long long)r->cfg->server.workers);
        break;
    case HOLDING:
        snprintf(buf, cap, "the uplink budget has not allowed the delta of step %llu",
                 (unsigned long long)r->step);
        break;
    case SYNCING:
        snprintf(buf, cap, "no global model from the coordinator at %.120s after delta %llu",
                 r->cfg->server.coordinator, (unsigned long long)r->wan_seq);
        break;
    default:
        len = (size_t)snprintf(buf, cap,
                               "no gradient for step %llu from:", (unsigned long long)r->step);
        for (int i = 0; i < r->n_workers && len < cap; i++)
            if (!r->workers[i].pushed)
                len += (size_t)snprintf(buf + len, cap - len, " '%s'", r->workers[i].name);
        break;
    }
}

/*
 * Applies cfg's [budget], unless the uplink could then never carry a useful
 * delta (a reload must not stop a running region): e says why then.
 */
static gdml_err set_budgets(region *r, const gdml_config *cfg, gdml_errmsg *e)
{
    gdml_budget_config up = {.rate = (double)cfg->budget.up_bytes_per_s,
                             .cap = (uint64_t)cfg->budget.up_total_bytes};
    /* Judged by the largest DELTA header this region will ever send. */
    gdml_msg_header h;
    delta_header(r, &h);
    h.seq = h.step = h.count = h.version = UINT64_MAX;
    h.down_rate = h.down_cap = UINT64_MAX;
    h.lr_steps = 1e300;
    gdml_err err = gdml_wan_try_budget(r->up, &up, &h, e);
    if (err)
        return err;
    r->down_rate = (uint64_t)cfg->budget.down_bytes_per_s;
    r->down_cap = (uint64_t)cfg->budget.down_total_bytes;
    return GDML_OK;
}

/* SIGHUP: re-read the configuration and apply its [budget]; the rest needs a restart. */
static void reload_budget(region *r)
{
    gdml_config fresh;
    gdml_errmsg why;
    if (gdml_program_reload(&fresh, &why) || set_budgets(r, &fresh, &why)) {
        gdml_error("SIGHUP: kept the old budget: %s", why.text);
        return;
    }
    gdml_info("SIGHUP: budget now up %lld B/s (total %lld), down %lld B/s (total %lld)",
              (long long)fresh.budget.up_bytes_per_s, (long long)fresh.budget.up_total_bytes,
              (long long)fresh.budget.down_bytes_per_s, (long long)fresh.budget.down_total_bytes);
}

static gdml_err serve(region *r, gdml_errmsg *e)
{
    gdml_link *links[2] = {r->lan, r->wan};
    r->last_progress_ms = gdml_now_ms();
    while (r->state != DONE) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        if (gdml_reload_requested())
            reload_budget(r);
        /* Checked every time round, so that a peer sending only junk or refused
         * messages cannot keep the region waiting for ever. */
        if (gdml_now_ms() - r->last_progress_ms > r->cfg->server.timeout_ms) {
            char wait[GDML_ERRMSG_MAX / 2];
            describe_wait(r, wait, sizeof wait);
            return gdml_errmsg_set(e, GDML_ERR_TIMEOUT, "no progress for %lld ms (%s)",
                                   (long long)r->cfg->server.timeout_ms, wait);
        }
        int poll_ms = POLL_MS;
        if (r->state == HOLDING) {
            gdml_err err = retry_hold(r, e);
            if (err)
                return err;
            if (r->state == HOLDING && r->hold_wait_ms < POLL_MS)
                poll_ms = (int)r->hold_wait_ms;
        }
        bool ready[2] = {false, false};
        gdml_err err = gdml_link_poll(links, 2, poll_ms, ready);
        if (err == GDML_ERR_AGAIN || err == GDML_ERR_INTERRUPTED)
            continue;
        if (err)
            return gdml_errmsg_set(e, err, "poll failed: %s", gdml_strerror(err));
        if (ready[1] && (err = on_wan(r, e)))
            return err;
        if (ready[0] && (err = on_lan(r, e)))
            return err;
    }
    return GDML_OK;
}

static gdml_err open_links(region *r, gdml_errmsg *e)
{
    const gdml_config *cfg = r->cfg;
    gdml_err err = gdml_transport_new(&r->transport, e);
    if (!err)
        err = gdml_link_bind(r->transport, cfg->server.listen, &r->lan, e);
    if (!err)
        err = gdml_link_connect(r->transport, cfg->server.coordinator, r->name, &r->wan, e);
    if (err)
        return err;
    char endpoint[GDML_ENDPOINT_MAX];
    if ((err = gdml_link_endpoint(r->lan, endpoint, sizeof endpoint)))
        return gdml_errmsg_set(e, err, "cannot read the bound endpoint");
    gdml_info("listening on %s for %lld workers; coordinator at %s; sync mode %s; uplink %s",
              endpoint, (long long)cfg->server.workers, cfg->server.coordinator,
              cfg->server.sync_mode, cfg->server.encoder);
    if ((err = gdml_write_endpoint_file(cfg->server.endpoint_file, endpoint, e)) ||
        (err = gdml_wan_log_open(cfg->server.byte_log, &r->byte_log, e)))
        return err;
    gdml_wan_config wc = {.encoder = cfg->server.encoder,
                          .k_fraction = cfg->server.k_fraction,
                          .threshold = cfg->server.threshold,
                          .min_message_bytes = (uint64_t)cfg->budget.min_message_bytes,
                          .peer = "coordinator",
                          .direction = "up",
                          .byte_log = r->byte_log};
    if ((err = gdml_wan_new(&wc, &r->up, e)) || (err = set_budgets(r, cfg, e)))
        return err;
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, r->name);
    h.seq = ++r->wan_seq;
    h.down_rate = r->down_rate;
    h.down_cap = r->down_cap;
    return gdml_wan_send_control(r->up, r->wan, NULL, &h, (int)cfg->server.timeout_ms, e);
}

gdml_err gdml_region_run(const gdml_config *cfg, gdml_errmsg *e)
{
    region *r = calloc(1, sizeof *r);
    if (!r)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    r->cfg = cfg;
    r->name = cfg->server.name;
    gdml_err err = open_links(r, e);
    if (!err)
        err = serve(r, e);
    if (r->state == DONE)
        stop_workers(r, "training complete");
    else
        stop_workers(r, "the regional server stopped early");
    if (!err) {
        gdml_link_stats lan;
        gdml_link_stats_get(r->lan, &lan);
        gdml_info("done: %llu steps, %llu syncs; WAN %llu B up, %llu B down; LAN %llu B in, "
                  "%llu B out",
                  (unsigned long long)r->step, (unsigned long long)r->syncs,
                  (unsigned long long)gdml_wan_bytes_sent(r->up),
                  (unsigned long long)gdml_wan_bytes_received(r->up),
                  (unsigned long long)lan.bytes_received, (unsigned long long)lan.bytes_sent);
    }
    gdml_wan_destroy(&r->up);
    if (r->byte_log)
        fclose(r->byte_log);
    gdml_link_close(&r->lan);
    gdml_link_close(&r->wan);
    gdml_transport_destroy(&r->transport);
    free(r->params);
    free(r->anchor);
    free(r->grad_sum);
    free(r->scratch);
    free(r->c_local);
    free(r->c_global);
    free(r);
    return err;
}
