/*
 * coordinator.c - the global coordinator's event loop.
 *
 * One thread, one ROUTER socket. Regions join with HELLO; each round every
 * region sends one DELTA (its model minus its view of the global model,
 * weighted by its sample count). When all expected regions have sent theirs,
 * the merge rule (merge.h) folds them into the global model, the result is
 * evaluated if there is an eval set, committed to the store as the next
 * version in one write transaction, and only then sent to the regions.
 * Committing before sending means a region never holds a version that a
 * crash could lose.
 *
 * What goes down to a region is what it lacks: the coordinator keeps each
 * region's view of the global model (what the messages it was sent decode
 * to) and sends encode(global - view) through that region's downlink (wan.h),
 * under the downlink budget the region asked for in its HELLO and DELTAs.
 * A region starts from the initial model of [model] seed, so WELCOME carries
 * global - initial: nothing at all for a new model. A message the budget does
 * not allow yet stays pending and goes out as soon as it does.
 *
 * Sequence numbers make merges idempotent: a region's delta whose sequence
 * number is not above the last one merged from that region is ignored.
 */
#include "coordinator.h"

#include "dataset.h"
#include "inbox.h"
#include "log.h"
#include "merge.h"
#include "model.h"
#include "store.h"
#include "tensor.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* How long one wait for a message lasts before timeouts and signals are checked. */
#define POLL_MS 200
#define SEND_TIMEOUT_MS 5000
/* The smallest downlink update worth sending when the budget is tight. */
#define DOWN_MIN_MESSAGE_BYTES 1024
/* Larger sample counts are refused: one region must not outweigh all others by lying. */
#define MAX_SAMPLES ((uint64_t)1 << 40)

typedef struct region {
    char name[GDML_NAME_MAX];
    gdml_peer peer;
    uint64_t merged_seq; /* highest sequence number merged: re-sends are ignored */
    bool has_delta;      /* `delta` holds this round's delta */
    uint64_t delta_seq, delta_samples;
    double delta_loss, delta_lr_steps;
    float *delta;
    gdml_wan *down;        /* this region's downlink */
    float *view;           /* the global model as this region holds it */
    gdml_msg_type pending; /* WELCOME or GLOBAL waiting for budget; 0 if none */
} region;

typedef struct coordinator {
    const gdml_config *cfg;
    gdml_transport *transport;
    gdml_link *link;
    gdml_store *store;
    gdml_merge *merge;
    gdml_layout layout;
    char layout_text[GDML_LAYOUT_MAX];
    size_t n_params;
    float *global;    /* the newest version's parameters */
    float *initial;   /* the model every region starts from ([model] seed) */
    float *scratch;   /* n_params: the update being sent */
    uint64_t version; /* newest committed version; 0 = the initial model */
    uint64_t seq;     /* sequence number of our last message */
    double lr_steps;  /* the last round's sample-weighted mean lr * local steps */
    region regions[GDML_STORE_MAX_REGIONS];
    int n_regions;
    gdml_dataset eval;
    FILE *byte_log;
    int64_t last_progress_ms;
} coordinator;

static region *find_region(coordinator *c, const char *name)
{
    for (int i = 0; i < c->n_regions; i++)
        if (strcmp(c->regions[i].name, name) == 0)
            return &c->regions[i];
    return NULL;
}

/*
 * A message without payload, through the region's downlink budget when it has
 * one. ERROR replies wait for no budget (a peer sending junk must not stall
 * the coordinator): with no tokens free they are dropped, with a warning.
 */
static void send_header(coordinator *c, const region *r, gdml_msg_type type, const char *text)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = ++c->seq;
    h.version = c->version;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_errmsg e;
    int wait_ms = type == GDML_MSG_ERROR ? 0 : SEND_TIMEOUT_MS;
    gdml_err err = r->down ? gdml_wan_send_control(r->down, c->link, &r->peer, &h, wait_ms, &e)
                           : gdml_link_send(c->link, &r->peer, &h, NULL, 0, SEND_TIMEOUT_MS, &e);
    if (err)
        gdml_warn("cannot send %s to region '%s': %s", gdml_msg_type_name(type), r->name, e.text);
}

static void refuse(coordinator *c, const gdml_rx *rx, const char *why)
{
    char who[GDML_PEER_ID_MAX * 4 + 1];
    gdml_warn("refused %s from '%s': %s", gdml_msg_type_name(rx->header.type),
              gdml_peer_str(&rx->peer, who, sizeof who), why);
    region *known = find_region(c, rx->header.sender);
    region tmp = {.peer = rx->peer};
    snprintf(tmp.name, sizeof tmp.name, "%s", rx->header.sender);
    if (known && gdml_peer_eq(&known->peer, &rx->peer))
        tmp.down = known->down;
    send_header(c, &tmp, GDML_MSG_ERROR, why);
}

/*
 * The downlink budget a region asks for travels in its HELLO and DELTA
 * headers. A budget under which no useful update could ever reach the region
 * is not applied (what one peer sends must not stop the coordinator): the
 * old one stays and e says why.
 */
/*
 * The header of a WELCOME or GLOBAL. SCAFFOLD's normaliser (lr * steps, see
 * region.c) holds for an average of the deltas: it is scaled by the server
 * learning rate, and left out (turning the correction off) for merge rules
 * that are not an average.
 */
static void down_header(const coordinator *c, gdml_msg_type type, gdml_msg_header *h)
{
    gdml_msg_header_init(h, type, "coordinator");
    h->seq = c->seq + 1;
    h->version = c->version;
    if (type == GDML_MSG_GLOBAL && strcmp(c->cfg->merge.rule, "fedavg") == 0)
        h->lr_steps = c->lr_steps * c->cfg->merge.lr;
    if (type == GDML_MSG_WELCOME) {
        snprintf(h->text, sizeof h->text, "%s", c->layout_text);
        h->count = (uint64_t)c->cfg->model.seed;
    }
}

static gdml_err apply_down_budget(coordinator *c, region *r, const gdml_msg_header *from,
                                  gdml_errmsg *e)
{
    gdml_budget_config b = {.rate = (double)from->down_rate, .cap = from->down_cap};
    gdml_msg_header h; /* WELCOME is the largest header the downlink sends */
    down_header(c, GDML_MSG_WELCOME, &h);
    h.lr_steps = 1e300;
    return gdml_wan_try_budget(r->down, &b, &h, e);
}

/*
 * Sends every pending WELCOME and GLOBAL the downlink budgets allow now, and
 * sets *wait_ms to when the next one will be allowed (-1 if none is pending).
 * A budget that can never carry a useful message is an error.
 */
static gdml_err flush_pending(coordinator *c, int64_t *wait_ms, gdml_errmsg *e)
{
    *wait_ms = -1;
    for (int i = 0; i < c->n_regions; i++) {
        region *r = &c->regions[i];
        if (!r->pending)
            continue;
        int64_t now = gdml_now_ms();
        gdml_ssub(c->n_params, c->global, r->view, c->scratch);
        gdml_msg_header h;
        down_header(c, r->pending, &h);
        size_t k = 0;
        gdml_err err = gdml_wan_send_update(r->down, c->link, &r->peer, &h, c->scratch, c->global,
                                            r->view, now, &k, e);
        if (err == GDML_ERR_AGAIN) {
            int64_t wait = gdml_wan_wait_ms(r->down, &h, now, e);
            if (wait < 0)
                return GDML_ERR_CONFIG;
            if (*wait_ms < 0 || wait < *wait_ms)
                *wait_ms = wait;
            continue;
        }
        if (err) {
            gdml_warn("cannot send %s to region '%s': %s", gdml_msg_type_name(r->pending), r->name,
                      e->text);
            continue;
        }
        c->seq++;
        gdml_debug("%s version %llu to '%s': %zu entries", gdml_msg_type_name(r->pending),
                   (unsigned long long)c->version, r->name, k);
        r->pending = 0;
    }
    return GDML_OK;
}

static gdml_err add_region(coordinator *c, const gdml_rx *rx, region **out, gdml_errmsg *e)
{
    region *r = &c->regions[c->n_regions];
    memset(r, 0, sizeof *r);
    snprintf(r->name, sizeof r->name, "%s", rx->header.sender);
    gdml_wan_config wc = {.encoder = c->cfg->coordinator.encoder,
                          .k_fraction = c->cfg->coordinator.k_fraction,
                          .threshold = c->cfg->coordinator.threshold,
                          .min_message_bytes = DOWN_MIN_MESSAGE_BYTES,
                          .peer = r->name,
                          .direction = "down",
                          .byte_log = c->byte_log};
    r->delta = malloc(c->n_params * sizeof(float));
    r->view = malloc(c->n_params * sizeof(float));
    gdml_err err = GDML_OK;
    if (!r->delta || !r->view)
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for region '%s'", r->name);
    if (!err)
        err = gdml_wan_new(&wc, &r->down, e);
    if (!err)
        err = gdml_wan_start(r->down, c->n_params,
                             (uint64_t)c->cfg->model.seed * 1000 + (uint64_t)c->n_regions, e);
    if (err) {
        free(r->delta);
        free(r->view);
        gdml_wan_destroy(&r->down);
        return err;
    }
    c->n_regions++;
    *out = r;
    return GDML_OK;
}

/* Undoes add_region for the region added last. */
static void drop_last_region(coordinator *c)
{
    region *r = &c->regions[--c->n_regions];
    free(r->delta);
    free(r->view);
    gdml_wan_destroy(&r->down);
    memset(r, 0, sizeof *r);
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
        gdml_errmsg e;
        if (add_region(c, rx, &r, &e)) {
            refuse(c, rx, e.text);
            return;
        }
        if (apply_down_budget(c, r, &rx->header, &e)) {
            /* It has not joined: the round does not wait for it. */
            refuse(c, rx, e.text);
            drop_last_region(c);
            return;
        }
        gdml_info("region '%s' joined (%d of %lld)", name, c->n_regions,
                  (long long)c->cfg->coordinator.regions);
    } else {
        gdml_errmsg e;
        if (apply_down_budget(c, r, &rx->header, &e)) {
            refuse(c, rx, e.text); /* it keeps the budget and the place it had */
            return;
        }
        gdml_info("region '%s' joined again; sending it version %llu", name,
                  (unsigned long long)c->version);
    }
    gdml_wan_note_received(r->down, rx, gdml_now_ms());
    r->peer = rx->peer;
    r->has_delta = false;
    /* A region that joins again may have restarted and counts from its HELLO
     * anew: deltas after this HELLO are new, whatever was merged before. */
    r->merged_seq = rx->header.seq;
    /* It starts from the initial model; WELCOME brings it the rest. */
    memcpy(r->view, c->initial, c->n_params * sizeof(float));
    r->pending = GDML_MSG_WELCOME;
    c->last_progress_ms = gdml_now_ms();
}

static void on_delta(coordinator *c, const gdml_rx *rx)
{
    const gdml_msg_header *h = &rx->header;
    region *r = find_region(c, h->sender);
    if (!r || !gdml_peer_eq(&r->peer, &rx->peer)) {
        refuse(c, rx, "send HELLO before DELTA");
        return;
    }
    gdml_wan_note_received(r->down, rx, gdml_now_ms());
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
    if (h->count == 0 || h->count > MAX_SAMPLES) {
        refuse(c, rx, "delta carries a sample count of 0 or above 2^40");
        return;
    }
    gdml_errmsg e;
    r->has_delta = false;
    if (gdml_wan_decode(rx, r->delta, c->n_params, &e)) {
        refuse(c, rx, e.text);
        return;
    }
    gdml_errmsg why;
    if (apply_down_budget(c, r, h, &why))
        gdml_warn("region '%s' asked for a downlink budget that cannot work; keeping the old "
                  "one: %s",
                  r->name, why.text);
    r->has_delta = true;
    r->delta_seq = h->seq;
    r->delta_samples = h->count;
    r->delta_loss = h->metric;
    r->delta_lr_steps = h->lr_steps;
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

/* Prints "name:up:down,..." for the progress output. */
static void print_links(const coordinator *c)
{
    for (int i = 0; i < c->n_regions; i++)
        printf("%s%s:%llu:%llu", i ? "," : "", c->regions[i].name,
               (unsigned long long)gdml_wan_bytes_received(c->regions[i].down),
               (unsigned long long)gdml_wan_bytes_sent(c->regions[i].down));
}

/* Merges the round's deltas, evaluates, commits, and queues the new version. */
static gdml_err merge_round(coordinator *c, gdml_errmsg *e)
{
    gdml_version_meta meta;
    memset(&meta, 0, sizeof meta);
    const float *deltas[GDML_STORE_MAX_REGIONS];
    double weights[GDML_STORE_MAX_REGIONS];
    double total = 0, loss_sum = 0, lr_steps_sum = 0;
    for (int i = 0; i < c->n_regions; i++) {
        region *r = &c->regions[i];
        deltas[i] = r->delta;
        weights[i] = (double)r->delta_samples;
        total += weights[i];
        loss_sum += r->delta_loss * weights[i];
        lr_steps_sum += r->delta_lr_steps * weights[i];
        gdml_region_part *p = &meta.regions[i];
        snprintf(p->name, sizeof p->name, "%s", r->name);
        p->seq = r->delta_seq;
        p->samples = r->delta_samples;
    }
    gdml_merge_apply(c->merge, c->global, deltas, weights, (size_t)c->n_regions);
    c->lr_steps = lr_steps_sum / total;
    meta.n_regions = (uint32_t)c->n_regions;
    meta.version = c->version + 1;
    meta.round = meta.version;
    meta.accuracy = NAN;
    meta.loss = NAN;
    bool last = meta.version >= (uint64_t)c->cfg->coordinator.rounds;
    if (c->eval.n && (last || meta.version % (uint64_t)c->cfg->coordinator.eval_every == 0)) {
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
        if (c->version < (uint64_t)c->cfg->coordinator.rounds)
            c->regions[i].pending = GDML_MSG_GLOBAL;
    }

    /* Machine-readable progress for gdml-launch and scripts: one line per version. */
    printf("round=%llu version=%llu accuracy=%.6f loss=%.6f train_loss=%.6f wan_up=%llu "
           "wan_down=%llu regions=%d links=",
           (unsigned long long)meta.round, (unsigned long long)meta.version, meta.accuracy,
           meta.loss, loss_sum / total, (unsigned long long)stats.bytes_received,
           (unsigned long long)stats.bytes_sent, c->n_regions);
    print_links(c);
    printf("\n");
    fflush(stdout);
    gdml_info("version %llu committed: accuracy %.4f, %d regions, %.0f samples",
              (unsigned long long)c->version, meta.accuracy, c->n_regions, total);
    c->last_progress_ms = gdml_now_ms();
    return GDML_OK;
}

static gdml_err serve(coordinator *c, gdml_errmsg *e)
{
    const int64_t timeout_ms = c->cfg->coordinator.timeout_ms;
    c->last_progress_ms = gdml_now_ms();
    int64_t wait = -1; /* until a pending downlink message may go; -1: none */
    while (c->version < (uint64_t)c->cfg->coordinator.rounds) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        /* Checked every time round, so that junk or refused messages cannot
         * keep the coordinator waiting for ever. */
        if (gdml_now_ms() - c->last_progress_ms > timeout_ms) {
            char what[GDML_ERRMSG_MAX / 2];
            describe_wait(c, what, sizeof what);
            return gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                                   "no progress for %lld ms (%s); check that those regional "
                                   "servers are running and can reach this coordinator",
                                   (long long)timeout_ms, what);
        }
        gdml_rx rx;
        int poll_ms = wait >= 0 && wait < POLL_MS ? (int)wait : POLL_MS;
        gdml_err err = gdml_inbox_recv(c->link, &rx, poll_ms, "a region", e);
        if (err && err != GDML_ERR_AGAIN) {
            return err;
        } else if (!err) {
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
        if ((err = flush_pending(c, &wait, e)))
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
    c->initial = malloc(c->n_params * sizeof(float));
    c->scratch = malloc(c->n_params * sizeof(float));
    if (!c->initial || !c->scratch)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", c->n_params);
    ops->init(&c->layout, c->initial, (uint64_t)cfg->model.seed);

    gdml_err err = gdml_store_open(cfg->coordinator.store, false, &c->store, e);
    if (err)
        return err;
    uint64_t head;
    err = gdml_store_head(c->store, &head);
    if (err == GDML_ERR_NOTFOUND) {
        if (!(c->global = malloc(c->n_params * sizeof(float))))
            return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters",
                                   c->n_params);
        memcpy(c->global, c->initial, c->n_params * sizeof(float));
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
    const gdml_config *cfg = c->cfg;
    gdml_err err = gdml_wan_log_open(cfg->coordinator.byte_log, &c->byte_log, e);
    if (!err)
        err = gdml_transport_new(&c->transport, e);
    if (!err)
        err = gdml_link_bind(c->transport, cfg->coordinator.listen, &c->link, e);
    if (err)
        return err;
    char endpoint[GDML_ENDPOINT_MAX];
    if ((err = gdml_link_endpoint(c->link, endpoint, sizeof endpoint)))
        return gdml_errmsg_set(e, err, "cannot read the bound endpoint");
    gdml_info("listening on %s for %lld regions, %lld rounds; merge %s, downlink %s", endpoint,
              (long long)cfg->coordinator.regions, (long long)cfg->coordinator.rounds,
              cfg->merge.rule, cfg->coordinator.encoder);
    return gdml_write_endpoint_file(cfg->coordinator.endpoint_file, endpoint, e);
}

static gdml_err load_eval(coordinator *c, gdml_errmsg *e)
{
    const gdml_config *cfg = c->cfg;
    if (!*cfg->coordinator.eval_images)
        return GDML_OK;
    gdml_err err = gdml_dataset_load_idx(cfg->coordinator.eval_images, cfg->coordinator.eval_labels,
                                         0, 1, &c->eval, e);
    if (err)
        return err;
    if (gdml_layout_check_data(&c->layout, c->eval.dim, c->eval.classes,
                               cfg->coordinator.eval_images, e)) {
        gdml_errmsg_prefix(e, "the eval set does not fit [model]: ");
        return GDML_ERR_CONFIG;
    }
    return GDML_OK;
}

gdml_err gdml_coordinator_run(const gdml_config *cfg, gdml_errmsg *e)
{
    coordinator c;
    memset(&c, 0, sizeof c);
    c.cfg = cfg;
    gdml_err err = load_model(&c, e); /* the layout first: the eval set is checked against it */
    if (!err)
        err = load_eval(&c, e);
    if (!err) {
        gdml_merge_config mc = {.rule = cfg->merge.rule,
                                .lr = cfg->merge.lr,
                                .momentum = cfg->merge.momentum,
                                .beta1 = cfg->merge.beta1,
                                .beta2 = cfg->merge.beta2,
                                .epsilon = cfg->merge.epsilon};
        err = gdml_merge_new(&mc, c.n_params, &c.merge, e);
    }
    if (!err)
        err = open_link(&c, e);
    if (err)
        goto out;
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
        printf("done versions=%llu wan_up=%llu wan_down=%llu links=", (unsigned long long)count,
               (unsigned long long)stats.bytes_received, (unsigned long long)stats.bytes_sent);
        print_links(&c);
        printf(" store=%s\n", cfg->coordinator.store);
        fflush(stdout);
        gdml_info("training complete at version %llu; %llu versions in '%s'",
                  (unsigned long long)c.version, (unsigned long long)count, cfg->coordinator.store);
    }
out:
    for (int i = 0; i < c.n_regions; i++) {
        free(c.regions[i].delta);
        free(c.regions[i].view);
        gdml_wan_destroy(&c.regions[i].down);
    }
    gdml_merge_destroy(&c.merge);
    free(c.global);
    free(c.initial);
    free(c.scratch);
    gdml_link_close(&c.link);
    gdml_transport_destroy(&c.transport);
    gdml_store_close(&c.store);
    gdml_dataset_fini(&c.eval);
    if (c.byte_log)
        fclose(c.byte_log);
    return err;
}
