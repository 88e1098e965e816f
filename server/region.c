/*
 * region.c - the regional parameter server's event loop.
 *
 * One thread, two sockets: a ROUTER bound for the data center's workers (LAN)
 * and a DEALER connected to the coordinator (WAN), polled together. The server
 * moves through four states:
 *
 *   JOINING   waiting for the coordinator's WELCOME (the global model) and a
 *             HELLO from every expected worker; then WELCOME to each worker.
 *   TRAINING  collecting one PUSH per worker for the current step; when all
 *             are in, SGD on their sample-weighted mean gradient, then either
 *             MODEL to every worker or, every sync_every steps, DELTA to the
 *             coordinator and
 *   SYNCING   waiting for GLOBAL, which replaces the local model and the
 *             anchor the next delta is measured from; then MODEL to workers.
 *   DONE      the coordinator said STOP; every worker is told STOP too.
 *
 * Workers that are waiting for MODEL simply wait through SYNCING, which is
 * what makes the two levels bulk-synchronous.
 */
#include "region.h"

#include "log.h"
#include "model.h"
#include "payload.h"
#include "tensor.h"
#include "transport.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 200
#define SEND_TIMEOUT_MS 5000
#define MAX_WORKERS 1024

typedef enum region_state { JOINING, TRAINING, SYNCING, DONE } region_state;

typedef struct worker_slot {
    char name[GDML_NAME_MAX];
    gdml_peer peer;
    uint64_t samples; /* size of the worker's shard, from its HELLO */
    bool pushed;      /* its gradient for the current step is in */
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

/* Sends the live model to every worker (one shared, immutable snapshot). */
static gdml_err broadcast_model(region *r, gdml_msg_type type, gdml_errmsg *e)
{
    gdml_blob *snapshot;
    if (gdml_payload_blob_f32(r->params, r->n_params, &snapshot))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a model snapshot");
    for (int i = 0; i < r->n_workers; i++)
        send_to_worker(r, &r->workers[i], type, snapshot,
                       type == GDML_MSG_WELCOME ? r->layout_text : NULL);
    gdml_blob_unref(&snapshot);
    return GDML_OK;
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
    /* A worker that restarted mid-training gets the live model. */
    if (w->pushed)
        return GDML_OK;
    gdml_blob *snapshot;
    if (gdml_payload_blob_f32(r->params, r->n_params, &snapshot))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a model snapshot");
    send_to_worker(r, w, GDML_MSG_WELCOME, snapshot, r->layout_text);
    gdml_blob_unref(&snapshot);
    return GDML_OK;
}

/* Sends the coordinator this round's delta: live model minus anchor. */
static gdml_err send_delta(region *r, gdml_errmsg *e)
{
    gdml_blob *delta;
    if (gdml_blob_new(r->n_params * sizeof(float), &delta))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a delta");
    gdml_ssub(r->n_params, r->params, r->anchor, gdml_blob_data(delta));
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, r->name);
    h.seq = ++r->wan_seq;
    h.version = r->version;
    h.step = ++r->syncs;
    h.count = region_samples(r);
    h.metric = r->loss_weight > 0 ? r->loss_sum / r->loss_weight : 0;
    gdml_err err = gdml_payload_send_f32(r->wan, NULL, &h, delta, SEND_TIMEOUT_MS, e);
    gdml_blob_unref(&delta);
    if (err) {
        gdml_errmsg_prefix(e, "cannot send the delta to the coordinator: ");
        return err;
    }
    gdml_debug("delta %llu sent at step %llu (version %llu, train loss %.4f)",
               (unsigned long long)h.seq, (unsigned long long)r->step,
               (unsigned long long)r->version, h.metric);
    r->loss_sum = r->loss_weight = 0;
    r->state = SYNCING;
    return GDML_OK;
}

/* All gradients of a step are in: average, apply, and move on. */
static gdml_err finish_step(region *r, gdml_errmsg *e)
{
    /* Non-IID regions drift apart at a constant rate; decaying it per global
     * version lets the merged model settle (as FedAvg's convergence needs). */
    float lr =
        (float)(r->cfg->server.learning_rate * pow(r->cfg->server.lr_decay, (double)r->version));
    gdml_saxpy(r->n_params, -lr / (float)r->batch_sum, r->grad_sum, r->params);
    gdml_szero(r->n_params, r->grad_sum);
    for (int i = 0; i < r->n_workers; i++)
        r->workers[i].pushed = false;
    r->n_pushed = 0;
    r->batch_sum = 0;
    r->step++;
    if (r->step % (uint64_t)r->cfg->server.sync_every == 0)
        return send_delta(r, e);
    return broadcast_model(r, GDML_MSG_MODEL, e);
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
    if (rx->header.count == 0) {
        refuse_worker(r, rx, "PUSH must carry its batch size");
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
    gdml_errmsg rx_err;
    gdml_err err = gdml_link_recv(r->lan, &rx, 0, &rx_err);
    if (err == GDML_ERR_AGAIN || err == GDML_ERR_INTERRUPTED)
        return GDML_OK;
    if (err == GDML_ERR_PROTO || err == GDML_ERR_VERSION) {
        gdml_warn("rejected a message from a worker: %s", rx_err.text);
        return GDML_OK;
    }
    if (err)
        return gdml_errmsg_set(e, err, "receive from workers failed: %s", rx_err.text);
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

/* WELCOME or GLOBAL: the coordinator's model becomes the live model and anchor. */
static gdml_err take_global(region *r, const gdml_rx *rx, gdml_errmsg *e)
{
    if (r->n_params == 0) {
        gdml_err err = gdml_layout_parse(rx->header.text, &r->layout, e);
        if (err)
            return gdml_errmsg_set(e, GDML_ERR_PROTO, "the coordinator's model layout: %s",
                                   e->text);
        const gdml_model_ops *ops = gdml_model_find(r->layout.kind);
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
    }
    gdml_errmsg why;
    if (gdml_payload_read_f32(rx, 0, r->scratch, r->n_params, &why)) {
        gdml_warn("ignored the coordinator's model: %s", why.text);
        return GDML_OK;
    }
    memcpy(r->params, r->scratch, r->n_params * sizeof(float));
    memcpy(r->anchor, r->scratch, r->n_params * sizeof(float));
    r->version = rx->header.version;
    r->last_progress_ms = gdml_now_ms();
    return GDML_OK;
}

static gdml_err on_wan(region *r, gdml_errmsg *e)
{
    gdml_rx rx;
    gdml_errmsg rx_err;
    gdml_err err = gdml_link_recv(r->wan, &rx, 0, &rx_err);
    if (err == GDML_ERR_AGAIN || err == GDML_ERR_INTERRUPTED)
        return GDML_OK;
    if (err == GDML_ERR_PROTO || err == GDML_ERR_VERSION) {
        gdml_warn("rejected a message from the coordinator: %s", rx_err.text);
        return GDML_OK;
    }
    if (err)
        return gdml_errmsg_set(e, err, "receive from the coordinator failed: %s", rx_err.text);
    switch (rx.header.type) {
    case GDML_MSG_WELCOME:
        gdml_info("coordinator sent version %llu (%s)", (unsigned long long)rx.header.version,
                  rx.header.text);
        if (!(err = take_global(r, &rx, e)))
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

static gdml_err serve(region *r, gdml_errmsg *e)
{
    gdml_link *links[2] = {r->lan, r->wan};
    r->last_progress_ms = gdml_now_ms();
    while (r->state != DONE) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        bool ready[2] = {false, false};
        gdml_err err = gdml_link_poll(links, 2, POLL_MS, ready);
        if (err == GDML_ERR_AGAIN || err == GDML_ERR_INTERRUPTED) {
            if (gdml_now_ms() - r->last_progress_ms > r->cfg->server.timeout_ms) {
                char wait[GDML_ERRMSG_MAX / 2];
                describe_wait(r, wait, sizeof wait);
                return gdml_errmsg_set(e, GDML_ERR_TIMEOUT, "no progress for %lld ms (%s)",
                                       (long long)r->cfg->server.timeout_ms, wait);
            }
            continue;
        }
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
    gdml_info("listening on %s for %lld workers; coordinator at %s, sync every %lld steps",
              endpoint, (long long)cfg->server.workers, cfg->server.coordinator,
              (long long)cfg->server.sync_every);
    if (*cfg->server.endpoint_file) {
        strcat(endpoint, "\n");
        if ((err =
                 gdml_write_file_atomic(cfg->server.endpoint_file, endpoint, strlen(endpoint), e)))
            return err;
    }
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, r->name);
    h.seq = ++r->wan_seq;
    return gdml_link_send(r->wan, NULL, &h, NULL, 0, SEND_TIMEOUT_MS, e);
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
        gdml_link_stats lan, wan;
        gdml_link_stats_get(r->lan, &lan);
        gdml_link_stats_get(r->wan, &wan);
        gdml_info("done: %llu steps, %llu syncs; WAN %llu B up, %llu B down; LAN %llu B in, "
                  "%llu B out",
                  (unsigned long long)r->step, (unsigned long long)r->syncs,
                  (unsigned long long)wan.bytes_sent, (unsigned long long)wan.bytes_received,
                  (unsigned long long)lan.bytes_received, (unsigned long long)lan.bytes_sent);
    }
    gdml_link_close(&r->lan);
    gdml_link_close(&r->wan);
    gdml_transport_destroy(&r->transport);
    free(r->params);
    free(r->anchor);
    free(r->grad_sum);
    free(r->scratch);
    free(r);
    return err;
}
