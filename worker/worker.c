/*
 * worker.c - gdml-worker: trains on one shard of its data center's data.
 *
 * The worker loads its shard (IDX, plain or .gz), joins its regional server
 * with HELLO (carrying its sample count), receives the model in WELCOME, and
 * then loops: compute the gradient of one minibatch on the model it holds,
 * PUSH it, wait for the next MODEL. Models and gradients travel in chunks
 * (chunk.h). Samples never leave the worker; only gradients do. Minibatches
 * walk a reshuffled permutation each epoch, seeded by worker.seed, so a run
 * is repeatable.
 *
 * A sparse model (sparselr) is pulled, not sent: its WELCOME tells only the
 * layout, and before each batch the worker sends PULL naming the keys the
 * batch touches; the server answers with a MODEL of the parameters at those
 * keys alone, and the PUSH carries the gradient at those keys alone. The
 * worker holds its data as sparse rows then, and never the whole model.
 *
 * Held-out rows (worker.holdout, holdout.h) are set aside at load and never
 * trained on; each model version that arrives is scored on them once, and
 * the score rides on every PUSH of that version (metrics only). A sparse
 * model's worker holds only its batch's keys, never a whole model to score:
 * its PUSHes go without a score.
 *
 * Nothing the server sends ends the worker but STOP: an ERROR is advisory (a
 * server that does not know it is joined again), a server that goes silent
 * is joined again, and only worker.timeout_ms without a model ends the run.
 *
 * Metrics (metrics_http.h): the loop copies its counters into the registry
 * from its tick, a few times a second; samples per second is the rate over
 * the last SAMPLES_WINDOW_MS.
 */
#include "chunk.h"
#include "codec.h"
#include "dataset.h"
#include "holdout.h"
#include "keys.h"
#include "log.h"
#include "metrics_catalog.h"
#include "metrics_http.h"
#include "model.h"
#include "program.h"
#include "ratelog.h"
#include "rng.h"
#include "transport.h"
#include "util.h"
#include "wan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define METRICS_EVERY_MS 250
#define SAMPLES_WINDOW_MS 2000

typedef struct worker {
    const gdml_config *cfg;
    const char *name;
    gdml_dataset data;
    gdml_dataset holdout; /* never trained on; scored once per model version */
    gdml_score score;     /* the holdout's score of score_version (rows 0: none) */
    uint64_t score_version;
    bool scored; /* score_version was scored (if its score could not be sent, too) */
    gdml_transport *transport;
    gdml_link *link;
    gdml_link_security sec;
    bool curve;
    gdml_layout layout;
    const gdml_model_ops *ops;
    char layout_text[GDML_MSG_TEXT_MAX];
    size_t n_params, batch;
    /* The model; a model arriving; a gradient; scratch; a batch. */
    float *params, *incoming, *grad, *scratch, *xb;
    uint8_t *yb;
    /* Sparse kinds: the batch as sparse rows, its keys, the pull that named them. */
    bool sparse;
    size_t *bptr;
    uint32_t *bidx, *keys, *ent_idx; /* ent: the entries of one chunk received */
    float *bval, *ent_val;
    size_t row_max, n_keys;
    uint64_t *marks;
    gdml_codec *by_keys; /* keys+f32: the gradient at the keys */
    gdml_codec *key_set; /* keys+none: the keys alone */
    uint64_t pull_seq;
    uint32_t *order; /* this epoch's sample order */
    size_t cursor;   /* next position in order */
    gdml_rng rng;
    gdml_codec *dense;
    gdml_transfer in;
    gdml_ratelog *log;
    uint64_t step, seq, version, pushes;
    uint64_t handshake_failures; /* with the server, last logged */
    int64_t hello_ms, heard_ms, sent_ms, model_ms;
    bool push_pending;   /* a model is in, and its gradient waits for worker.step_delay_ms */
    int64_t push_due_ms; /* when it is computed */
    int64_t first_model_ms, compute_us; /* training started; time spent computing gradients */
    bool done;
    /* Metrics only. */
    gdml_program_metrics metrics;
    uint64_t rejected[GDML_REASON_COUNT], reconnects, samples, window_samples;
    double train_loss; /* of the last batch */
    int64_t metrics_ms, window_ms;
} worker;

/* Copies the next minibatch into xb/yb (or the sparse rows bptr/bidx/bval),
 * reshuffling at each epoch's start. */
static void next_batch(worker *w)
{
    const gdml_dataset *d = &w->data;
    if (w->sparse)
        w->bptr[0] = 0;
    for (size_t i = 0; i < w->batch; i++) {
        if (w->cursor == d->n) {
            gdml_rng_shuffle_u32(&w->rng, w->order, d->n);
            w->cursor = 0;
        }
        uint32_t row = w->order[w->cursor++];
        w->yb[i] = d->y[row];
        if (!w->sparse) {
            memcpy(w->xb + i * d->dim, d->x + (size_t)row * d->dim, d->dim * sizeof(float));
            continue;
        }
        size_t lo = d->ptr[row], len = d->ptr[row + 1] - lo;
        memcpy(w->bidx + w->bptr[i], d->idx + lo, len * sizeof *w->bidx);
        memcpy(w->bval + w->bptr[i], d->val + lo, len * sizeof *w->bval);
        w->bptr[i + 1] = w->bptr[i] + len;
    }
}

static gdml_csr batch_rows(const worker *w)
{
    return (gdml_csr){.ptr = w->bptr, .idx = w->bidx, .val = w->bval};
}

static void send_frame(worker *w, gdml_blob *f, int64_t now)
{
    gdml_errmsg e;
    if (gdml_link_send(w->link, NULL, f, &e))
        gdml_warn("send_failed", "why=%s", e.text);
    w->sent_ms = now;
}

static void send_control(worker *w, gdml_msg_type type, const char *text, int64_t now)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, w->name);
    h.seq = ++w->seq;
    h.version = w->version;
    h.step = w->step;
    if (type == GDML_MSG_HELLO)
        h.count = w->data.n;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_blob *f = NULL;
    if (gdml_frame_header_only(&h, &f) == GDML_OK)
        send_frame(w, f, now);
    gdml_blob_unref(&f);
    if (type == GDML_MSG_HELLO)
        w->hello_ms = now;
}

/* Sends h as the frames of dense tensor x, each as soon as it is made, so
 * that the server works on the first chunks while the last are made. */
static gdml_err send_dense(worker *w, gdml_codec *c, gdml_msg_header *h, const float *x,
                           int64_t now, gdml_errmsg *e)
{
    for (uint64_t i = 0; i < gdml_chunk_count(gdml_codec_size(c)); i++) {
        gdml_blob *f = NULL;
        uint64_t wire = 0;
        gdml_err err = gdml_codec_dense_frame(c, h, x, i, w->curve, &f, &wire);
        if (err == GDML_ERR_INVALID)
            return gdml_errmsg_set(e, err,
                                   "the gradient of step %llu is not finite; lower the learning "
                                   "rate",
                                   (unsigned long long)w->step);
        if (err)
            return gdml_errmsg_set(e, err, "cannot make the frames of a %s",
                                   gdml_msg_type_name(h->type));
        send_frame(w, f, now);
        gdml_blob_unref(&f);
    }
    return GDML_OK;
}

/* Sends h as the frames of x, as c selects it (p: the keys of a sparse model's). */
static gdml_err send_tensor(worker *w, gdml_codec *c, const gdml_codec_params *p,
                            gdml_msg_header *h, const float *x, int64_t now, gdml_errmsg *e)
{
    if (!gdml_codec_sparse(c))
        return send_dense(w, c, h, x, now, e);
    size_t k;
    gdml_wan_update u;
    if (gdml_codec_select(c, x, p, &k))
        return gdml_errmsg_set(e, GDML_ERR_INVALID,
                               "the gradient of step %llu is not finite; lower the learning rate",
                               (unsigned long long)w->step);
    gdml_err err = gdml_codec_frames(c, h, x, NULL, w->curve, &u, e);
    if (err)
        return err;
    for (size_t i = 0; i < u.n_frames; i++)
        send_frame(w, u.frames[i], now);
    gdml_wan_update_fini(&u);
    return GDML_OK;
}

/* Sparse kinds: picks the next batch and asks the server for the model at its keys. */
static gdml_err pull_next(worker *w, int64_t now, gdml_errmsg *e)
{
    next_batch(w);
    gdml_model_keys(&w->layout, batch_rows(w), w->batch, w->marks, w->keys, &w->n_keys);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PULL, w->name);
    h.seq = w->pull_seq = ++w->seq;
    h.version = w->version;
    h.step = w->step;
    gdml_codec_params p = {.keys = w->keys, .n_keys = w->n_keys};
    return send_tensor(w, w->key_set, &p, &h, w->grad, now, e);
}

static gdml_err push_gradient(worker *w, int64_t now, gdml_errmsg *e)
{
    if (!w->sparse)
        next_batch(w); /* a sparse model's was chosen when it was pulled */
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, w->name);
    int64_t t0 = gdml_now_us();
    if (w->sparse)
        h.metric =
            w->ops->loss_grad_csr(&w->layout, w->params, batch_rows(w), w->yb, w->batch, w->grad);
    else
        h.metric =
            w->ops->loss_grad(&w->layout, w->params, w->xb, w->yb, w->batch, w->grad, w->scratch);
    w->compute_us += gdml_now_us() - t0;
    w->train_loss = h.metric;
    h.seq = ++w->seq;
    h.version = w->version;
    h.step = w->step;
    h.count = w->batch;
    if (w->score_version == w->version) {
        h.val = w->score;
        h.val_version = w->score.rows ? w->score_version : 0;
    }
    gdml_codec_params p = {.keys = w->keys, .n_keys = w->n_keys};
    gdml_err err = w->sparse ? send_tensor(w, w->by_keys, &p, &h, w->grad, now, e)
                             : send_tensor(w, w->dense, NULL, &h, w->grad, now, e);
    if (err)
        return err;
    w->pushes++;
    w->samples += w->batch;
    return w->sparse ? pull_next(w, now, e) : GDML_OK;
}

/* The first model: learn the layout, check it fits the data, allocate. */
static gdml_err take_layout(worker *w, const gdml_msg_header *h, gdml_errmsg *e)
{
    if (gdml_layout_parse(h->text, &w->layout, e)) {
        gdml_errmsg_prefix(e, "the server's model layout: ");
        return GDML_ERR_PROTO;
    }
    if (!(w->ops = gdml_model_find(w->layout.kind)))
        return gdml_errmsg_set(e, GDML_ERR_PROTO,
                               "the server trains a '%s' model, which this build lacks",
                               w->layout.kind);
    const char *file = gdml_config_data_name(w->cfg->worker.data, w->cfg->worker.images);
    if (gdml_layout_check_data(&w->layout, w->data.dim, w->data.classes, file, e)) {
        gdml_errmsg_prefix(e, "this worker's data does not fit the server's model "
                              "(check [model] and the worker's data): ");
        return GDML_ERR_CONFIG;
    }
    w->sparse = w->ops->sparse;
    gdml_err err =
        w->sparse ? gdml_dataset_sparsify(&w->data, e) : gdml_dataset_densify(&w->data, e);
    if (err) {
        gdml_errmsg_prefix(e, "'%s': ", file);
        return err;
    }
    if (w->holdout.n && (err = w->sparse ? gdml_dataset_sparsify(&w->holdout, e)
                                         : gdml_dataset_densify(&w->holdout, e)))
        return err;
    w->n_params = w->ops->param_count(&w->layout);
    w->params = malloc(w->n_params * sizeof(float));
    w->incoming = malloc(w->n_params * sizeof(float));
    w->grad = calloc(w->n_params, sizeof(float)); /* a sparse model's is zero off its keys */
    w->scratch = malloc((w->ops->scratch_count(&w->layout, w->batch) + 1) * sizeof(float));
    bool ok = w->params && w->incoming && w->grad && w->scratch &&
              !gdml_transfer_init(&w->in, w->n_params);
    if (ok && w->sparse) {
        for (size_t r = 0; r < w->data.n; r++)
            if (w->data.ptr[r + 1] - w->data.ptr[r] > w->row_max)
                w->row_max = w->data.ptr[r + 1] - w->data.ptr[r];
        size_t entries = w->batch * w->row_max + 1;
        ok = (w->bptr = malloc((w->batch + 1) * sizeof *w->bptr)) &&
             (w->bidx = malloc(entries * sizeof *w->bidx)) &&
             (w->bval = malloc(entries * sizeof *w->bval)) &&
             (w->keys = malloc(entries * sizeof *w->keys)) &&
             (w->marks = calloc(w->n_params / 64 + 1, sizeof *w->marks)) &&
             (w->ent_idx = malloc(GDML_CHUNK_ELEMS * sizeof *w->ent_idx)) &&
             (w->ent_val = malloc(GDML_CHUNK_ELEMS * sizeof *w->ent_val));
    } else if (ok) {
        ok = (w->xb = malloc(w->batch * w->data.dim * sizeof(float))) != NULL;
    }
    if (!ok)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu parameters", w->n_params);
    snprintf(w->layout_text, sizeof w->layout_text, "%s", h->text);
    if (w->sparse && ((err = gdml_codec_new("keys+f32", w->n_params, 0, &w->by_keys, e)) ||
                      (err = gdml_codec_new("keys+none", w->n_params, 0, &w->key_set, e))))
        return err;
    return gdml_codec_new("dense", w->n_params, 0, &w->dense, e);
}

/* Scores the model just taken on the holdout, once per version: what that
 * costs is bounded by worker.holdout_rows. A score that cannot be sent (a
 * diverged model's loss) is left out; training never depends on it. */
static void score_version(worker *w)
{
    if (w->holdout.n == 0 || w->sparse || (w->scored && w->score_version == w->version))
        return;
    double acc = 0, loss = 0;
    gdml_score s = {.rows = w->holdout.n};
    w->score = (gdml_score){0};
    w->score_version = w->version;
    w->scored = true;
    if (gdml_model_evaluate(&w->layout, w->params, w->holdout.x, w->holdout.y, w->holdout.n, &acc,
                            &loss)) {
        gdml_warn("score_failed", "version=%llu why=%s", (unsigned long long)w->version,
                  "out of memory? its PUSHes go without a score");
        return;
    }
    s.correct = (uint64_t)llround(acc * (double)s.rows);
    s.loss = loss;
    if (gdml_score_ok(&s, s.rows))
        w->score = s;
    gdml_debug("holdout_score", "version=%llu rows=%llu accuracy=%.4f loss=%.4f",
               (unsigned long long)w->version, (unsigned long long)s.rows, acc, loss);
}

/* A chunk of WELCOME or MODEL; when the model is whole, the next gradient goes out. */
static gdml_err on_model(worker *w, int64_t now, const gdml_rx *rx, gdml_errmsg *e)
{
    const gdml_msg_header *h = &rx->header;
    if (!w->params) {
        if (h->type != GDML_MSG_WELCOME) {
            w->rejected[GDML_REASON_UNEXPECTED]++;
            gdml_ratelog_note(w->log, now, GDML_LOG_WARN, "unexpected_frame", "server",
                              "unexpected", "why=%s", "MODEL before WELCOME");
            return GDML_OK;
        }
        gdml_err err = take_layout(w, h, e);
        if (err)
            return err;
    }
    if (h->type == GDML_MSG_WELCOME && strcmp(h->text, w->layout_text) != 0)
        return gdml_errmsg_set(e, GDML_ERR_PROTO, "the server now trains '%s', not '%s'", h->text,
                               w->layout_text);
    if (w->sparse && h->type == GDML_MSG_WELCOME) { /* the layout alone: pull the first batch */
        w->step = h->step;
        w->version = h->version;
        w->model_ms = now;
        return pull_next(w, now, e);
    }
    if (w->sparse && h->acked != w->pull_seq)
        return GDML_OK; /* the answer to an earlier pull, for another batch */
    gdml_errmsg why;
    bool complete = false;
    gdml_reason r;
    if (w->sparse) { /* the entries at its keys, not whole chunks */
        size_t k;
        r = gdml_tensor_receive_entries(&w->in, h, rx->payload, w->n_params, "server", w->ent_idx,
                                        w->ent_val, GDML_CHUNK_ELEMS, &k, &complete, &why);
        for (size_t j = 0; r == GDML_REASON_NONE && j < k; j++)
            w->incoming[w->ent_idx[j]] = w->ent_val[j];
    } else {
        r = gdml_tensor_receive(&w->in, h, rx->payload, w->incoming, w->n_params, false, "server",
                                &complete, &why);
    }
    if (r != GDML_REASON_NONE) {
        w->rejected[r]++;
        if (r != GDML_REASON_DUPLICATE && r != GDML_REASON_STALE)
            gdml_ratelog_note(w->log, now, GDML_LOG_WARN, "frame_refused", "server",
                              gdml_reason_name(r), "why=%s", why.text);
        return GDML_OK;
    }
    if (!complete)
        return GDML_OK;
    float *t = w->params;
    w->params = w->incoming;
    w->incoming = t;
    w->step = h->step;
    w->version = h->version;
    w->model_ms = now;
    score_version(w);
    if (!w->first_model_ms) {
        w->first_model_ms = now;
        gdml_info("first_model", "version=%llu step=%llu", (unsigned long long)w->version,
                  (unsigned long long)w->step);
    }
    if (w->cfg->worker.step_delay_ms > 0) { /* a straggler, on purpose */
        w->push_pending = true;
        w->push_due_ms = now + w->cfg->worker.step_delay_ms;
        return GDML_OK;
    }
    return push_gradient(w, now, e);
}

static gdml_err on_frame(worker *w, int64_t now, const gdml_rx *rx, gdml_errmsg *e)
{
    const gdml_msg_header *h = &rx->header;
    w->heard_ms = now;
    switch (h->type) {
    case GDML_MSG_WELCOME:
    case GDML_MSG_MODEL:
        return on_model(w, now, rx, e);
    case GDML_MSG_STOP:
        gdml_info("stop", "why=%s pushes=%llu", h->text, (unsigned long long)w->pushes);
        w->done = true;
        return GDML_OK;
    case GDML_MSG_ERROR:
        gdml_ratelog_note(w->log, now, GDML_LOG_WARN, "peer_error", "server", "refused",
                          "code=%s why=%s", gdml_reason_name(h->code), h->text);
        if (h->code == GDML_REASON_NOT_MEMBER && now - w->hello_ms > w->cfg->net.heartbeat_ms)
            send_control(w, GDML_MSG_HELLO, NULL, now); /* it does not know us: join again */
        return GDML_OK;
    case GDML_MSG_HEARTBEAT:
        return GDML_OK;
    default:
        w->rejected[GDML_REASON_UNEXPECTED]++;
        gdml_ratelog_note(w->log, now, GDML_LOG_WARN, "unexpected_frame", "server", "unexpected",
                          "type=%s", gdml_msg_type_name(h->type));
        return GDML_OK;
    }
}

/* Copies the worker's counters into the registry, at most every METRICS_EVERY_MS. */
static void publish(worker *w, int64_t now)
{
    gdml_metrics *m = w->metrics.registry;
    if (!m || now - w->metrics_ms < METRICS_EVERY_MS)
        return;
    w->metrics_ms = now;
    gdml_metric_set(gdml_metrics_plain(m, "gdml_global_version"), (double)w->version);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_pushes_total"), (double)w->pushes);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_samples_total"), (double)w->samples);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_compute_seconds_total"),
                      (double)w->compute_us / 1e6);
    gdml_metric_count(gdml_metrics_plain(m, "gdml_reconnects_total"), (double)w->reconnects);
    gdml_metrics_count_reasons(m, w->rejected);
    if (!w->window_ms) {
        w->window_ms = now;
    } else if (now - w->window_ms >= SAMPLES_WINDOW_MS) {
        gdml_metric_set(gdml_metrics_plain(m, "gdml_samples_per_second"),
                        (double)(w->samples - w->window_samples) * 1000.0 /
                            (double)(now - w->window_ms));
        w->window_ms = now;
        w->window_samples = w->samples;
    }
    gdml_link_stats st;
    gdml_link_stats_get(w->link, &st);
    const char *up[] = {"up"}, *down[] = {"down"};
    gdml_metric_count(gdml_metrics_series(m, "gdml_lan_bytes_total", up), (double)st.bytes_sent);
    gdml_metric_count(gdml_metrics_series(m, "gdml_lan_bytes_total", down),
                      (double)st.bytes_received);
    if (w->pushes)
        gdml_metrics_score(m, "train", NAN, w->train_loss);
    if (w->score.rows)
        gdml_metrics_score(m, "validation", (double)w->score.correct / (double)w->score.rows,
                           w->score.loss);
}

static gdml_err tick(worker *w, int64_t now, gdml_errmsg *e)
{
    publish(w, now);
    const gdml_config *cfg = w->cfg;
    gdml_link_stats st;
    gdml_link_stats_get(w->link, &st);
    if (st.auth_refused > w->handshake_failures) {
        w->handshake_failures = st.auth_refused;
        gdml_warn("handshake_refused", "server=%s times=%llu hint=%s", cfg->worker.server,
                  (unsigned long long)st.auth_refused,
                  "check that security.server_key is the server's .pub file and that its "
                  "allow-list holds this worker's public key");
    }
    gdml_ratelog_flush(w->log, now);
    if (gdml_link_reconnected(w->link) && !w->done) {
        w->reconnects++;
        gdml_info("reconnect", "peer=server");
        send_control(w, GDML_MSG_HELLO, NULL, now);
    }
    if (now - w->model_ms > cfg->worker.timeout_ms)
        return gdml_errmsg_set(e, GDML_ERR_TIMEOUT,
                               "no %s from the regional server at %s for %lld ms; check that it "
                               "is running and that worker.server is right",
                               w->params ? "model" : "welcome", cfg->worker.server,
                               (long long)cfg->worker.timeout_ms);
    /* The server silent, or no WELCOME yet: join (again). */
    if (now - w->heard_ms > cfg->net.peer_timeout_ms &&
        now - w->hello_ms > cfg->net.peer_timeout_ms)
        send_control(w, GDML_MSG_HELLO, NULL, now);
    else if (now - w->sent_ms >= cfg->net.heartbeat_ms)
        send_control(w, GDML_MSG_HEARTBEAT, NULL, now);
    return GDML_OK;
}

static gdml_err serve(worker *w, gdml_errmsg *e)
{
    int64_t now = gdml_now_ms();
    w->heard_ms = w->model_ms = now;
    send_control(w, GDML_MSG_HELLO, NULL, now);
    while (!w->done) {
        if (gdml_stop_requested()) {
            send_control(w, GDML_MSG_LEAVE, "stopped by a signal", gdml_now_ms());
            gdml_link_flush(w->link, gdml_now_ms());
            return gdml_errmsg_set(e, GDML_ERR_INTERRUPTED, "stopped by a signal");
        }
        now = gdml_now_ms();
        if (w->push_pending && now >= w->push_due_ms) {
            w->push_pending = false;
            gdml_err err = push_gradient(w, now, e);
            if (err)
                return err;
        }
        int64_t wait = gdml_link_flush(w->link, now);
        if (w->push_pending && (wait < 0 || w->push_due_ms - now < wait))
            wait = w->push_due_ms > now ? w->push_due_ms - now : 0;
        bool ready = false;
        gdml_link_poll(&w->link, 1, wait >= 0 && wait < 100 ? (int)wait : 100, &ready);
        for (int i = 0; ready && i < 256 && !w->done; i++) {
            gdml_rx rx;
            gdml_errmsg why;
            now = gdml_now_ms();
            gdml_err r = gdml_link_recv(w->link, &rx, &why);
            if (r == GDML_ERR_AGAIN)
                break;
            if (r == GDML_ERR_PROTO || r == GDML_ERR_VERSION) {
                if ((unsigned)rx.reason < GDML_REASON_COUNT)
                    w->rejected[rx.reason]++;
                gdml_ratelog_note(w->log, now, GDML_LOG_WARN, "frame_refused", "server-link",
                                  gdml_reason_name(rx.reason), "why=%s", why.text);
                continue;
            }
            if (r)
                return gdml_errmsg_set(e, r, "%s", why.text);
            gdml_err err = on_frame(w, now, &rx, e);
            gdml_rx_release(&rx);
            if (err)
                return err;
        }
        gdml_err err = tick(w, gdml_now_ms(), e);
        if (err)
            return err;
    }
    return GDML_OK;
}

static gdml_err run(const gdml_config *cfg, gdml_errmsg *e)
{
    worker *w = calloc(1, sizeof *w);
    if (!w)
        return gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory");
    w->cfg = cfg;
    w->name = cfg->worker.name;
    w->batch = (size_t)cfg->worker.batch_size;
    w->seq = (uint64_t)gdml_wall_ms() * 16; /* above what an earlier run of it used */
    gdml_rng_seed(&w->rng, (uint64_t)cfg->worker.seed);

    /* LIBSVM stays sparse until the server's layout says what the model takes. */
    bool sparse = gdml_config_data_format(cfg, cfg->worker.data) == GDML_DATA_LIBSVM;
    gdml_err err = gdml_config_load_data(cfg, cfg->worker.data, cfg->worker.images,
                                         cfg->worker.labels, (size_t)cfg->worker.shard_index,
                                         (size_t)cfg->worker.shard_count, sparse, &w->data, e);
    if (!err)
        err = gdml_holdout_take(&w->data, cfg->worker.holdout, (size_t)cfg->worker.holdout_rows,
                                (uint64_t)cfg->worker.seed, &w->holdout, e);
    if (err)
        goto out;
    w->order = malloc(w->data.n * sizeof *w->order);
    w->yb = malloc(w->batch);
    if (!w->order || !w->yb || gdml_ratelog_new(10000, 16, &w->log)) {
        err = gdml_errmsg_set(e, GDML_ERR_NOMEM, "out of memory for %zu samples", w->data.n);
        goto out;
    }
    for (size_t i = 0; i < w->data.n; i++)
        w->order[i] = (uint32_t)i;
    w->cursor = w->data.n; /* shuffle before the first batch */
    gdml_info("data_loaded", "samples=%zu shard=%lld shards=%lld data=%s holdout=%zu", w->data.n,
              (long long)cfg->worker.shard_index, (long long)cfg->worker.shard_count,
              gdml_config_data_name(cfg->worker.data, cfg->worker.images), w->holdout.n);

    if ((err =
             gdml_program_metrics_start(cfg, GDML_ROLE_WORKER, "worker", w->name, &w->metrics, e)))
        goto out;
    w->curve = gdml_keys_curve_on(cfg, true);
    gdml_link_options opts;
    if ((err = gdml_keys_connect_options(cfg, w->curve, w->name, cfg->security.server_key,
                                         "server_key", &w->sec, &opts, e)) ||
        (err = gdml_transport_new(&w->transport, e)) ||
        (err = gdml_link_connect(w->transport, cfg->worker.server, &opts, &w->link, e)))
        goto out;
    err = serve(w, e);
    if (!err) {
        gdml_link_stats stats;
        gdml_link_stats_get(w->link, &stats);
        int64_t trained_ms = w->first_model_ms ? gdml_now_ms() - w->first_model_ms : 0;
        gdml_info("done",
                  "pushes=%llu lan_up=%llu lan_down=%llu compute_ms=%lld train_ms=%lld "
                  "utilization=%.3f",
                  (unsigned long long)w->pushes, (unsigned long long)stats.bytes_sent,
                  (unsigned long long)stats.bytes_received, (long long)(w->compute_us / 1000),
                  (long long)trained_ms,
                  trained_ms > 0 ? (double)w->compute_us / 1000.0 / (double)trained_ms : 0.0);
    }
out:
    gdml_program_metrics_stop(&w->metrics);
    gdml_link_close(&w->link);
    gdml_transport_destroy(&w->transport);
    gdml_link_security_fini(&w->sec);
    gdml_dataset_fini(&w->data);
    gdml_dataset_fini(&w->holdout);
    gdml_transfer_fini(&w->in);
    gdml_codec_destroy(&w->dense);
    gdml_codec_destroy(&w->by_keys);
    gdml_codec_destroy(&w->key_set);
    gdml_ratelog_destroy(&w->log);
    free(w->bptr);
    free(w->bidx);
    free(w->bval);
    free(w->keys);
    free(w->marks);
    free(w->ent_idx);
    free(w->ent_val);
    free(w->order);
    free(w->xb);
    free(w->yb);
    free(w->params);
    free(w->incoming);
    free(w->grad);
    free(w->scratch);
    free(w);
    return err;
}

static const char *const sections[] = {"worker", "data", "security", "net", "metrics", "log", NULL};

static const gdml_program program = {
    .name = "gdml-worker",
    .summary = "Worker: trains on its shard of one data center's data and pushes gradients "
               "to its regional server. Samples never leave it.",
    .usage = "--name NAME (--images FILE --labels FILE | --data FILE) [--config FILE] [options]",
    .sections = sections,
    .metrics_roles = GDML_ROLE_WORKER,
};

int main(int argc, char **argv)
{
    return gdml_main(&program, argc, argv, run);
}
