/*
 * worker.c - gdml-worker: trains on one shard of its data center's data.
 *
 * The worker loads its shard (IDX, plain or .gz), joins its regional server
 * with HELLO (carrying its sample count), receives the model in WELCOME, and
 * then loops: compute the gradient of one minibatch on the model it holds,
 * PUSH it, wait for the next MODEL. Samples never leave the worker; only
 * gradients do. Minibatches walk a reshuffled permutation each epoch, seeded
 * by worker.seed, so a run is repeatable.
 */
#include "dataset.h"
#include "inbox.h"
#include "log.h"
#include "model.h"
#include "payload.h"
#include "program.h"
#include "rng.h"
#include "transport.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define POLL_MS 200
#define SEND_TIMEOUT_MS 5000

typedef struct worker {
    const gdml_config *cfg;
    const char *name;
    gdml_dataset data;
    gdml_transport *transport;
    gdml_link *link;
    gdml_layout layout;
    const gdml_model_ops *ops;
    size_t n_params, batch;
    float *params, *scratch, *xb; /* model; model scratch; one batch of rows */
    uint8_t *yb;
    uint32_t *order; /* this epoch's sample order */
    size_t cursor;   /* next position in order */
    gdml_rng rng;
    uint64_t step, seq, version;
} worker;

/* Copies the next minibatch into xb/yb, reshuffling at each epoch's start. */
static void next_batch(worker *w)
{
    const gdml_dataset *d = &w->data;
    for (size_t i = 0; i < w->batch; i++) {
        if (w->cursor == d->n) {
            gdml_rng_shuffle_u32(&w->rng, w->order, d->n);
            w->cursor = 0;
        }
        uint32_t row = w->order[w->cursor++];
        memcpy(w->xb + i * d->dim, d->x + (size_t)row * d->dim, d->dim * sizeof(float));
        w->yb[i] = d->y[row];
    }
}

static gdml_err push_gradient(worker *w, gdml_errmsg *e)
{
    gdml_blob *grad;
    if (gdml_blob_new(w->n_params * sizeof(float), &grad))
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for a gradient");
    next_batch(w);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, w->name);
    h.metric = w->ops->loss_grad(&w->layout, w->params, w->xb, w->yb, w->batch,
                                 gdml_blob_data(grad), w->scratch);
    h.seq = ++w->seq;
    h.version = w->version;
    h.step = w->step;
    h.count = w->batch;
    gdml_err err = gdml_payload_send_f32(w->link, NULL, &h, grad, SEND_TIMEOUT_MS, e);
    gdml_blob_unref(&grad);
    if (err)
        gdml_errmsg_prefix(e,
                           "cannot push the gradient of step %llu: ", (unsigned long long)w->step);
    return err;
}

/* The first model: learn the layout, check it fits the data, allocate. */
static gdml_err take_welcome(worker *w, const gdml_rx *rx, gdml_errmsg *e)
{
    if (gdml_layout_parse(rx->header.text, &w->layout, e)) {
        gdml_errmsg_prefix(e, "the server's model layout: ");
        return GDML_ERR_PROTO;
    }
    if (!(w->ops = gdml_model_find(w->layout.kind)))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "the server trains a '%s' model, which this "
                               "build lacks",
                               w->layout.kind);
    if (gdml_layout_check_data(&w->layout, w->data.dim, w->data.classes, w->cfg->worker.images,
                               e)) {
        gdml_errmsg_prefix(e, "this worker's data does not fit the server's model "
                              "(check [model] and worker.images): ");
        return GDML_ERR_CONFIG;
    }
    w->n_params = w->ops->param_count(&w->layout);
    w->params = malloc(w->n_params * sizeof(float));
    w->scratch = malloc(w->ops->scratch_count(&w->layout, w->batch) * sizeof(float));
    if (!w->params || !w->scratch)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", w->n_params);
    return GDML_OK;
}

/* Waits for the server's next message and acts on it; sets *done on STOP. */
static gdml_err await_model(worker *w, bool *done, gdml_errmsg *e)
{
    int64_t since = gdml_now_ms();
    for (;;) {
        if (gdml_stop_requested())
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        gdml_rx rx;
        if (gdml_now_ms() - since > w->cfg->worker.timeout_ms)
            return gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                                   "no %s from the regional server at %s for %lld ms; check "
                                   "that it is running and that worker.server is right",
                                   w->params ? "model" : "welcome", w->cfg->worker.server,
                                   (long long)w->cfg->worker.timeout_ms);
        gdml_err err = gdml_inbox_recv(w->link, &rx, POLL_MS, "the server", e);
        if (err == GDML_ERR_AGAIN)
            continue;
        if (err)
            return err;

        const gdml_msg_header *h = &rx.header;
        switch (h->type) {
        case GDML_MSG_WELCOME: /* carries the model as MODEL does, and its layout */
        case GDML_MSG_MODEL:
            if (h->type == GDML_MSG_WELCOME && !w->params && (err = take_welcome(w, &rx, e)))
                break;
            if (!w->params) {
                gdml_warn("ignored MODEL before WELCOME");
                break;
            }
            if ((err = gdml_payload_read_f32(&rx, 0, w->params, w->n_params, e)))
                break;
            w->step = h->step;
            w->version = h->version;
            gdml_rx_release(&rx);
            return GDML_OK;
        case GDML_MSG_STOP:
            gdml_info("server says stop (%s) after %llu pushes", h->text,
                      (unsigned long long)w->seq - 1);
            *done = true;
            gdml_rx_release(&rx);
            return GDML_OK;
        case GDML_MSG_ERROR:
            err = gdml_errmsg_set(e, GDML_ERR_PROTO, "the server refused us: %s", h->text);
            break;
        default:
            gdml_warn("ignored %s from the server", gdml_msg_type_name(h->type));
            break;
        }
        gdml_rx_release(&rx);
        if (err)
            return err;
    }
}

static gdml_err run(const gdml_config *cfg, gdml_errmsg *e)
{
    worker w;
    memset(&w, 0, sizeof w);
    w.cfg = cfg;
    w.name = cfg->worker.name;
    w.batch = (size_t)cfg->worker.batch_size;
    gdml_rng_seed(&w.rng, (uint64_t)cfg->worker.seed);

    gdml_err err = gdml_dataset_load_idx(cfg->worker.images, cfg->worker.labels,
                                         (size_t)cfg->worker.shard_index,
                                         (size_t)cfg->worker.shard_count, &w.data, e);
    if (err)
        goto out;
    w.order = malloc(w.data.n * sizeof *w.order);
    w.xb = malloc(w.batch * w.data.dim * sizeof(float));
    w.yb = malloc(w.batch);
    if (!w.order || !w.xb || !w.yb) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu samples", w.data.n);
        goto out;
    }
    for (size_t i = 0; i < w.data.n; i++)
        w.order[i] = (uint32_t)i;
    w.cursor = w.data.n; /* shuffle before the first batch */
    gdml_info("loaded %zu samples (shard %lld of %lld) from '%s'", w.data.n,
              (long long)cfg->worker.shard_index, (long long)cfg->worker.shard_count,
              cfg->worker.images);

    if ((err = gdml_transport_new(&w.transport, e)) ||
        (err = gdml_link_connect(w.transport, cfg->worker.server, w.name, &w.link, e)))
        goto out;
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, w.name);
    h.seq = ++w.seq;
    h.count = w.data.n;
    if ((err = gdml_link_send(w.link, NULL, &h, NULL, 0, SEND_TIMEOUT_MS, e)))
        goto out;

    bool done = false;
    while (!(err = await_model(&w, &done, e)) && !done)
        if ((err = push_gradient(&w, e)))
            break;
    if (!err) {
        gdml_link_stats stats;
        gdml_link_stats_get(w.link, &stats);
        gdml_info("done: %llu steps; LAN %llu B up, %llu B down", (unsigned long long)w.seq - 1,
                  (unsigned long long)stats.bytes_sent, (unsigned long long)stats.bytes_received);
    }
out:
    gdml_link_close(&w.link);
    gdml_transport_destroy(&w.transport);
    gdml_dataset_fini(&w.data);
    free(w.order);
    free(w.xb);
    free(w.yb);
    free(w.params);
    free(w.scratch);
    return err;
}

static const char *const sections[] = {"worker", "log", NULL};

static const gdml_program program = {
    .name = "gdml-worker",
    .summary = "Worker: trains on its shard of one data center's data and pushes gradients "
               "to its regional server. Samples never leave it.",
    .usage = "--name NAME --images FILE --labels FILE [--config FILE] [options]",
    .sections = sections,
};

int main(int argc, char **argv)
{
    return gdml_main(&program, argc, argv, run);
}
