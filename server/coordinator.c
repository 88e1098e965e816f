/*
 * coordinator.c - the global coordinator's event loop.
 *
 * One thread, one ROUTER socket. Regions join with HELLO and get the current
 * global model in WELCOME. Each round every region sends one DELTA (its model
 * minus the global model it started from, weighted by its sample count); when
 * all expected regions have sent theirs, the coordinator merges them (FedAvg:
 * the sample-weighted mean of the deltas is added to the global model),
 * evaluates the result if it has an eval set, commits it to the store as the
 * next version in one write transaction, and only then sends it to every
 * region as GLOBAL. Committing before sending means a region never holds a
 * version that a crash could lose.
 *
 * Sequence numbers make merges idempotent: a region's delta whose sequence
 * number is not above the last one merged from that region is ignored.
 */
#include "coordinator.h"

#include "dataset.h"
#include "log.h"
#include "model.h"
#include "payload.h"
#include "store.h"
#include "tensor.h"
#include "transport.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long one wait for a message lasts before timeouts and signals are checked. */
#define POLL_MS 200
/* How long a send may block on a peer whose queue is full. */
#define SEND_TIMEOUT_MS 5000

typedef struct region {
    char name[GDML_NAME_MAX];
    gdml_peer peer;
    uint64_t merged_seq; /* highest sequence number merged: re-sends are ignored */
    bool has_delta;      /* `delta` holds this round's delta */
    uint64_t delta_seq, delta_samples;
    double delta_loss;
    float *delta;
} region;

typedef struct coordinator {
    const gdml_config *cfg;
    gdml_transport *transport;
    gdml_link *link;
    gdml_store *store;
    gdml_layout layout;
    char layout_text[GDML_LAYOUT_MAX];
    size_t n_params;
    float *global;          /* the newest version's parameters */
    gdml_blob *global_blob; /* the same, as sent; immutable, replaced per version */
    uint64_t version;       /* newest committed version; 0 = the initial model */
    uint64_t seq;           /* sequence number of our last message */
    region regions[GDML_STORE_MAX_REGIONS];
    int n_regions;
    gdml_dataset eval;
    int64_t last_progress_ms;
} coordinator;

static region *find_region(coordinator *c, const char *name)
{
    for (int i = 0; i < c->n_regions; i++)
        if (strcmp(c->regions[i].name, name) == 0)
            return &c->regions[i];
    return NULL;
}

static void send_header(coordinator *c, const region *r, gdml_msg_type type, const char *text)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = ++c->seq;
    h.version = c->version;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_errmsg e;
    if (gdml_link_send(c->link, &r->peer, &h, NULL, 0, SEND_TIMEOUT_MS, &e))
        gdml_warn("cannot send %s to region '%s': %s", gdml_msg_type_name(type), r->name, e.text);
}

static gdml_err send_model(coordinator *c, const region *r, gdml_msg_type type)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = ++c->seq;
    h.version = c->version;
    snprintf(h.text, sizeof h.text, "%s", c->layout_text);
    gdml_errmsg e;
    gdml_err err =
        gdml_payload_send_f32(c->link, &r->peer, &h, c->global_blob, SEND_TIMEOUT_MS, &e);
    if (err)
        gdml_warn("cannot send %s to region '%s': %s", gdml_msg_type_name(type), r->name, e.text);
    return err;
}

static void refuse(coordinator *c, const gdml_rx *rx, const char *why)
{
    char who[GDML_PEER_ID_MAX * 4 + 1];
    gdml_warn("refused %s from '%s': %s", gdml_msg_type_name(rx->header.type),
              gdml_peer_str(&rx->peer, who, sizeof who), why);
    region tmp = {.peer = rx->peer};
    snprintf(tmp.name, sizeof tmp.name, "%s", rx->header.sender);
    send_header(c, &tmp, GDML_MSG_ERROR, why);
}

static void on_hello(coordinator *c, const gdml_rx *rx)
{
    const char *name = rx->header.sender;
    region *r = find_region(c, name);
    if (!r) {
        if (c->n_regions == (int)c->cfg->coordinator.regions) {
            char why[GDML_MSG_TEXT_MAX];
            snprintf(why, sizeof why,
                     "this coordinator expects %d regions and all have joined; "
                     "restart it with a larger --regions to add '%s'",
                     c->n_regions, name);
            refuse(c, rx, why);
            return;
        }
        r = &c->regions[c->n_regions];
        memset(r, 0, sizeof *r);
        r->delta = malloc(c->n_params * sizeof(float));
        if (!r->delta) {
            refuse(c, rx, "the coordinator is out of memory");
            return;
        }
        snprintf(r->name, sizeof r->name, "%s", name);
        c->n_regions++;
        gdml_info("region '%s' joined (%d of %lld)", name, c->n_regions,
                  (long long)c->cfg->coordinator.regions);
    } else {
        gdml_info("region '%s' joined again; sending it version %llu", name,
                  (unsigned long long)c->version);
    }
    r->peer = rx->peer;
    r->has_delta = false;
    c->last_progress_ms = gdml_now_ms();
    send_model(c, r, GDML_MSG_WELCOME);
}

static void on_delta(coordinator *c, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    region *r = find_region(c, h->sender);
    if (!r || !gdml_peer_eq(&r->peer, &rx->peer)) {
        refuse(c, rx, "send HELLO before DELTA");
        return;
    }
    if (h->seq <= r->merged_seq) {
        gdml_info("region '%s': delta seq %llu was merged already; ignoring the re-send", r->name,
                  (unsigned long long)h->seq);
        return;
    }
    if (h->version != c->version) {
        char why[GDML_MSG_TEXT_MAX];
        snprintf(why, sizeof why, "delta is against version %llu but the current version is %llu",
                 (unsigned long long)h->version, (unsigned long long)c->version);
        refuse(c, rx, why);
        return;
    }
    if (h->count == 0) {
        refuse(c, rx, "delta carries a sample count of 0");
        return;
    }
    gdml_errmsg e;
    r->has_delta = false;
    if (gdml_payload_read_f32(rx, 0, r->delta, c->n_params, &e)) {
        refuse(c, rx, e.text);
        return;
    }
    r->has_delta = true;
    r->delta_seq = h->seq;
    r->delta_samples = h->count;
    r->delta_loss = h->metric;
    c->last_progress_ms = gdml_now_ms();
    gdml_debug("region '%s': delta seq %llu for version %llu (%llu samples)", r->name,
               (unsigned long long)h->seq, (unsigned long long)h->version,
               (unsigned long long)h->count);
}

static bool round_complete(const coordinator *c)
{
    if (c->n_regions < (int)c->cfg->coordinator.regions)
        return false;
    for (int i = 0; i < c->n_regions; i++)
        if (!c->regions[i].has_delta)
            return false;
    return true;
}

/* Names the regions the coordinator is waiting for, for the timeout error. */
static void describe_wait(const coordinator *c, char *buf, size_t cap)
{
    size_t len = 0;
    if (c->n_regions < (int)c->cfg->coordinator.regions) {
        len += (size_t)snprintf(buf, cap, "only %d of %lld regions joined", c->n_regions,
                                (long long)c->cfg->coordinator.regions);
    } else {
        len += (size_t)snprintf(buf, cap,
                                "no delta for version %llu from:", (unsigned long long)c->version);
        for (int i = 0; i < c->n_regions && len < cap; i++)
            if (!c->regions[i].has_delta)
                len += (size_t)snprintf(buf + len, cap - len, " '%s'", c->regions[i].name);
    }
}

static gdml_err replace_global_blob(coordinator *c)
{
    gdml_blob *b;
    if (gdml_payload_blob_f32(c->global, c->n_params, &b))
        return GDML_ERR_NOMEM;
    gdml_blob_unref(&c->global_blob);
    c->global_blob = b;
    return GDML_OK;
}

/* FedAvg: global += sum_i (n_i / sum n) * delta_i; then evaluate, commit, broadcast. */
static gdml_err merge_round(coordinator *c, gdml_errmsg *e)
{
    gdml_version_meta meta;
    memset(&meta, 0, sizeof meta);
    double total = 0, loss_sum = 0;
    for (int i = 0; i < c->n_regions; i++) {
        total += (double)c->regions[i].delta_samples;
        loss_sum += c->regions[i].delta_loss * (double)c->regions[i].delta_samples;
    }
    for (int i = 0; i < c->n_regions; i++) {
        region *r = &c->regions[i];
        gdml_saxpy(c->n_params, (float)((double)r->delta_samples / total), r->delta, c->global);
        gdml_region_part *p = &meta.regions[i];
        snprintf(p->name, sizeof p->name, "%s", r->name);
        p->seq = r->delta_seq;
        p->samples = r->delta_samples;
    }
    meta.n_regions = (uint32_t)c->n_regions;
    meta.version = c->version + 1;
    meta.round = meta.version;
    meta.accuracy = NAN;
    meta.loss = NAN;
    if (c->eval.n) {
        gdml_err err = gdml_model_evaluate(&c->layout, c->global, c->eval.x, c->eval.y, c->eval.n,
                                           &meta.accuracy, &meta.loss);
        if (err)
            return gdml_errmsg_set(e, err, "cannot evaluate version %llu: %s",
                                   (unsigned long long)meta.version, gdml_strerror(err));
    }
    gdml_link_stats stats;
    gdml_link_stats_get(c->link, &stats);
    meta.bytes_received = stats.bytes_received;
    meta.bytes_sent = stats.bytes_sent;
    meta.time_ms = gdml_wall_ms();

    gdml_err err = gdml_store_commit(c->store, &meta, c->layout_text, c->global, c->n_params, e);
    if (err)
        return err;
    c->version = meta.version;
    for (int i = 0; i < c->n_regions; i++) {
        c->regions[i].merged_seq = c->regions[i].delta_seq;
        c->regions[i].has_delta = false;
    }
    if ((err = replace_global_blob(c)))
        return gdml_errmsg_set(e, err, "out of memory after committing version %llu",
                               (unsigned long long)c->version);

    /* Machine-readable progress for gdml-launch and scripts: one line per version. */
    printf("round=%llu version=%llu accuracy=%.6f loss=%.6f train_loss=%.6f wan_up=%llu "
           "wan_down=%llu regions=%d\n",
           (unsigned long long)meta.round, (unsigned long long)meta.version, meta.accuracy,
           meta.loss, loss_sum / total, (unsigned long long)stats.bytes_received,
           (unsigned long long)stats.bytes_sent, c->n_regions);
    fflush(stdout);
    gdml_info("version %llu committed: accuracy %.4f, %d regions, %.0f samples",
              (unsigned long long)c->version, meta.accuracy, c->n_regions, total);

    if (c->version < (uint64_t)c->cfg->coordinator.rounds)
        for (int i = 0; i < c->n_regions; i++)
            send_model(c, &c->regions[i], GDML_MSG_GLOBAL);
    c->last_progress_ms = gdml_now_ms();
    return GDML_OK;
}

static gdml_err serve(coordinator *c, gdml_errmsg *e)
{
    const int64_t timeout_ms = c->cfg->coordinator.timeout_ms;
    c->last_progress_ms = gdml_now_ms();
    while (c->version < (uint64_t)c->cfg->coordinator.rounds) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        gdml_rx rx;
        gdml_errmsg rx_err;
        gdml_err err = gdml_link_recv(c->link, &rx, POLL_MS, &rx_err);
        if (err == GDML_ERR_AGAIN || err == GDML_ERR_INTERRUPTED) {
            if (gdml_now_ms() - c->last_progress_ms > timeout_ms) {
                char wait[GDML_ERRMSG_MAX / 2];
                describe_wait(c, wait, sizeof wait);
                return gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                                       "no progress for %lld ms (%s); check that those regional "
                                       "servers are running and can reach this coordinator",
                                       (long long)timeout_ms, wait);
            }
            continue;
        }
        if (err == GDML_ERR_PROTO || err == GDML_ERR_VERSION) {
            gdml_warn("rejected a message: %s", rx_err.text);
            continue;
        }
        if (err)
            return gdml_errmsg_set(e, err, "receive failed: %s", rx_err.text);

        switch (rx.header.type) {
        case GDML_MSG_HELLO:
            on_hello(c, &rx);
            break;
        case GDML_MSG_DELTA:
            on_delta(c, &rx);
            break;
        case GDML_MSG_ERROR:
            gdml_warn("region '%s' reports: %s", rx.header.sender, rx.header.text);
            break;
        default:
            refuse(c, &rx, "the coordinator accepts only HELLO and DELTA");
            break;
        }
        gdml_rx_release(&rx);
        if (round_complete(c) && (err = merge_round(c, e)))
            return err;
    }
    return GDML_OK;
}

/* Opens the store and resumes from its newest version, or starts a new model. */
static gdml_err load_model(coordinator *c, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    snprintf(c->layout.kind, sizeof c->layout.kind, "%s", cfg->model.kind);
    c->layout.inputs = (uint32_t)cfg->model.inputs;
    c->layout.classes = (uint32_t)cfg->model.classes;
    gdml_layout_format(&c->layout, c->layout_text, sizeof c->layout_text);
    const gdml_model_ops *ops = gdml_model_find(c->layout.kind);
    if (!ops)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG, "[model] kind '%s' is not built in",
                               c->layout.kind);
    c->n_params = ops->param_count(&c->layout);

    gdml_err err = gdml_store_open(cfg->coordinator.store, false, &c->store, e);
    if (err)
        return err;
    uint64_t head;
    err = gdml_store_head(c->store, &head);
    if (err == GDML_ERR_NOTFOUND) {
        if (!(c->global = malloc(c->n_params * sizeof(float))))
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters",
                                   c->n_params);
        ops->init(&c->layout, c->global, (uint64_t)cfg->model.seed);
        gdml_info("new model %s (%zu parameters); store '%s' is empty", c->layout_text, c->n_params,
                  cfg->coordinator.store);
        return GDML_OK;
    }
    if (err)
        return gdml_errmsg_set(e, err, "cannot read the newest version in '%s'",
                               cfg->coordinator.store);
    char stored_layout[GDML_LAYOUT_MAX];
    size_t n;
    if ((err = gdml_store_params(c->store, head, stored_layout, &c->global, &n, e)))
        return err;
    if (strcmp(stored_layout, c->layout_text) != 0 || n != c->n_params)
        return gdml_errmsg_set(e, GDML_ERR_CONFIG,
                               "store '%s' holds a '%s' model but [model] says '%s'; point "
                               "--store at another directory or fix [model]",
                               cfg->coordinator.store, stored_layout, c->layout_text);
    c->version = head;
    gdml_info("resuming from version %llu in '%s'", (unsigned long long)head,
              cfg->coordinator.store);
    return GDML_OK;
}

static gdml_err open_link(coordinator *c, gdml_errmsg *e)
{
    gdml_err err = gdml_transport_new(&c->transport, e);
    if (!err)
        err = gdml_link_bind(c->transport, c->cfg->coordinator.listen, &c->link, e);
    if (err)
        return err;
    char endpoint[GDML_ENDPOINT_MAX];
    if ((err = gdml_link_endpoint(c->link, endpoint, sizeof endpoint)))
        return gdml_errmsg_set(e, err, "cannot read the bound endpoint");
    gdml_info("listening on %s for %lld regions, %lld rounds", endpoint,
              (long long)c->cfg->coordinator.regions, (long long)c->cfg->coordinator.rounds);
    const char *file = c->cfg->coordinator.endpoint_file;
    if (*file) {
        strcat(endpoint, "\n");
        return gdml_write_file_atomic(file, endpoint, strlen(endpoint), e);
    }
    return GDML_OK;
}

gdml_err gdml_coordinator_run(const gdml_config *cfg, gdml_errmsg *e)
{
    coordinator c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    gdml_err err = GDML_OK;

    if (*cfg->coordinator.eval_images) {
        err = gdml_dataset_load_idx(cfg->coordinator.eval_images, cfg->coordinator.eval_labels, 0,
                                    1, &c.eval, e);
        if (err)
            goto out;
        if (c.eval.dim != (size_t)cfg->model.inputs || c.eval.classes > cfg->model.classes) {
            err = gdml_errmsg_set(e, GDML_ERR_CONFIG,
                                  "eval set '%s' has %zu inputs and %u classes; [model] says "
                                  "%lld inputs, %lld classes",
                                  cfg->coordinator.eval_images, c.eval.dim, c.eval.classes,
                                  (long long)cfg->model.inputs, (long long)cfg->model.classes);
            goto out;
        }
    }
    if ((err = load_model(&c, e)) || (err = open_link(&c, e)))
        goto out;
    if ((err = replace_global_blob(&c))) {
        gdml_errmsg_set(e, err, "out of memory");
        goto out;
    }
    err = serve(&c, e);

    /* Whatever ended the run, tell the regions so that the job stops, not hangs. */
    for (int i = 0; i < c.n_regions; i++)
        send_header(&c, &c.regions[i], GDML_MSG_STOP,
                    err ? "the coordinator stopped early" : "training complete");
    if (!err) {
        gdml_link_stats stats;
        gdml_link_stats_get(c.link, &stats);
        uint64_t count = 0;
        gdml_store_count(c.store, &count);
        printf("done versions=%llu wan_up=%llu wan_down=%llu store=%s\n", (unsigned long long)count,
               (unsigned long long)stats.bytes_received, (unsigned long long)stats.bytes_sent,
               cfg->coordinator.store);
        fflush(stdout);
        gdml_info("training complete at version %llu; %llu versions in '%s'",
                  (unsigned long long)c.version, (unsigned long long)count, cfg->coordinator.store);
    }
out:
    for (int i = 0; i < c.n_regions; i++)
        free(c.regions[i].delta);
    gdml_blob_unref(&c.global_blob);
    free(c.global);
    gdml_link_close(&c.link);
    gdml_transport_destroy(&c.transport);
    gdml_store_close(&c.store);
    gdml_dataset_fini(&c.eval);
    return err;
}
