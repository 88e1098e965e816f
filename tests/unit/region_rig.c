/*
 * region_rig.c - the rig of the regional server's state-machine tests; see
 * region_rig.h.
 *
 * Every expected model is computed here, independently of the region: SGD
 * on the sample-weighted mean gradient, params -= lr * sum(b * g) / sum(b),
 * chunk by chunk over the samples that reached each chunk.
 */
#include "region_rig.h"

#include "log.h"
#include "model.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
void rig_quiet(void)
{
    gdml_log_init("test_region_sm", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT);
}

void rig_config(rig *g)
{
    memset(g, 0, sizeof *g);
    gdml_region_config *c = &g->cfg;
    c->name = "us-east";
    c->workers = 2;
    c->sync = gdml_sync_mode_find("steps");
    cr_assert_not_null(c->sync);
    c->sync_every = 3;
    c->learning_rate = LR;
    c->lr_decay = 1;
    c->scaffold = false;
    c->timeout_ms = 10000;
    c->heartbeat_ms = 1000;
    c->peer_timeout_ms = 3000;
    c->max_worker_samples = 100000;
    c->max_grad_norm = 100;
    c->encoder = "dense";
    c->k_fraction = 0.1;
    c->up_budget = (gdml_budget_config){.rate = 0};
    c->min_message_bytes = 64;
    c->seq_base = 1000;
    g->seq = 1;
}

void drain(rig *g)
{
    gdml_action a;
    while (gdml_region_next_action(g->r, &a)) {
        if (a.kind == GDML_ACT_SEND && a.link == GDML_LINK_UP) {
            cr_assert_lt(g->n_up, UP_MAX);
            size_t len;
            const uint8_t *view = gdml_blob_view(a.frame, &len);
            gdml_msg_header h;
            const uint8_t *payload;
            gdml_errmsg e = {{0}};
            cr_assert_eq(gdml_msg_decode(view, len, &h, &payload, NULL, &e), GDML_OK, "%s", e.text);
            g->up[g->n_up++] =
                (up_frame){.t = g->now, .wire = gdml_wire_bytes(len, g->cfg.curve), .type = h.type};
        }
        test_actions_add(&g->acts, &a);
    }
}

void rig_open(rig *g)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&g->cfg, &g->r, &e), GDML_OK, "%s", e.text);
    g->now = 0;
    gdml_region_start(g->r, g->now);
    drain(g);
}

void rig_fini(rig *g)
{
    test_actions_clear(&g->acts);
    free(g->acts.a);
    gdml_region_destroy(&g->r);
    cr_assert_null(g->r);
    free(g->init);
}

void clear(rig *g)
{
    test_actions_clear(&g->acts);
}

/* Hands the region one frame, as received from name through route. */
void feed(rig *g, int link, gdml_blob *frame, const char *name, const char *route)
{
    test_rx t;
    test_rx_from(&t, frame, name, route);
    gdml_region_on_frame(g->r, g->now, link, &t.rx);
    test_rx_fini(&t);
    drain(g);
}

void feed_control(rig *g, int link, gdml_msg_type type, const char *name, const char *route,
                  uint64_t step, uint64_t count)
{
    gdml_blob *f = test_control(type, name, g->seq++, 0, step, count);
    feed(g, link, f, name, route);
    gdml_blob_unref(&f);
}

void tick(rig *g, int64_t t)
{
    g->now = t;
    gdml_region_on_tick(g->r, t);
    drain(g);
}

void hello(rig *g, const char *name, const char *route, uint64_t samples)
{
    feed_control(g, GDML_LINK_DOWN, GDML_MSG_HELLO, name, route, 0, samples);
}

/* A worker's gradient for step, weighing batch: its frames, one per chunk. */
gdml_blob **push_frames(rig *g, const char *name, uint64_t step, uint64_t batch, const float *grad,
                        size_t *nf)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, name);
    h.seq = g->seq++;
    h.step = step;
    h.count = batch;
    h.metric = 0.25;
    return test_tensor_frames(&h, grad, g->n, NULL, nf);
}

void push(rig *g, const char *name, const char *route, uint64_t step, uint64_t batch,
          const float *grad)
{
    size_t nf;
    gdml_blob **f = push_frames(g, name, step, batch, grad, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(g, GDML_LINK_DOWN, f[i], name, route);
    test_frames_free(f, nf);
}

/* A tensor from the coordinator (WELCOME, GLOBAL), all its chunks. */
void coord_tensor(rig *g, gdml_msg_type type, const char *text, uint64_t count, uint64_t version,
                  const float *x)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = g->seq++;
    h.version = version;
    h.step = version;
    h.count = count;
    if (type == GDML_MSG_GLOBAL)
        h.lr_steps = LR * 3;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    size_t nf;
    gdml_blob **f = test_tensor_frames(&h, x, g->n, NULL, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(g, GDML_LINK_UP, f[i], "coordinator", "");
    test_frames_free(f, nf);
}

void coord_control(rig *g, gdml_msg_type type, gdml_reason code, const char *text)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, type, "coordinator");
    h.seq = g->seq++;
    h.code = code;
    snprintf(h.text, sizeof h.text, "%s", text ? text : "");
    gdml_blob *f = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &f), GDML_OK);
    feed(g, GDML_LINK_UP, f, "coordinator", "");
    gdml_blob_unref(&f);
}

/* The layout, and the initial model of SEED made by the model's own init. */
void set_layout(rig *g, const char *text)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_layout_parse(text, &g->layout, &e), GDML_OK, "%s", e.text);
    const gdml_model_ops *ops = gdml_model_find(g->layout.kind);
    cr_assert_not_null(ops);
    g->n = ops->param_count(&g->layout);
    free(g->init);
    g->init = malloc(g->n * sizeof(float));
    cr_assert_not_null(g->init);
    ops->init(&g->layout, g->init, SEED);
}

/* The coordinator's WELCOME: layout text, seed SEED, version 0, zero change. */
void welcome(rig *g, const char *text)
{
    set_layout(g, text);
    float *zero = calloc(g->n, sizeof(float));
    cr_assert_not_null(zero);
    coord_tensor(g, GDML_MSG_WELCOME, text, SEED, 0, zero);
    free(zero);
}

bool sent_to(const test_action *a, const char *route)
{
    if (!*route)
        return a->act.link == GDML_LINK_UP;
    gdml_peer p = test_route(route);
    return a->act.link == GDML_LINK_DOWN && gdml_peer_eq(&a->act.peer, &p);
}

/*
 * Decodes the SENDs of type to route (route "" = upstream) into out[0..n),
 * checking that they are one transfer covering the tensor exactly once;
 * returns how many frames there were (0: none) and the first one's header.
 */
size_t sent_tensor(const rig *g, gdml_msg_type type, const char *route, float *out,
                   gdml_msg_header *first)
{
    size_t frames = 0;
    uint64_t seq = 0, covered = 0;
    uint64_t chunks = gdml_chunk_count(g->n);
    bool *seen = calloc(chunks, sizeof *seen);
    cr_assert_not_null(seen);
    for (size_t i = 0; i < g->acts.n; i++) {
        const test_action *a = &g->acts.a[i];
        if (a->act.kind != GDML_ACT_SEND || a->h.type != type || !sent_to(a, route))
            continue;
        cr_assert_eq(a->h.encoding, GDML_ENC_CODEC, "%s to '%s' without a tensor",
                     gdml_msg_type_name(type), route);
        cr_assert_eq(a->h.total, g->n, "%s of %llu elements; the model has %zu",
                     gdml_msg_type_name(type), (unsigned long long)a->h.total, g->n);
        if (frames == 0) {
            seq = a->h.seq;
            if (first)
                *first = a->h;
        }
        cr_assert_eq(a->h.seq, seq, "two %s transfers to '%s' in one batch",
                     gdml_msg_type_name(type), route);
        uint64_t c = a->h.offset / GDML_CHUNK_ELEMS;
        cr_assert(!seen[c], "chunk %llu of %s sent twice", (unsigned long long)c,
                  gdml_msg_type_name(type));
        seen[c] = true;
        covered++;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_wan_decode_chunk(&a->h, a->payload, out, "the region", &e), GDML_OK, "%s",
                     e.text);
        frames++;
    }
    if (frames)
        cr_assert_eq(covered, chunks, "%s to '%s' covers %llu of %llu chunks",
                     gdml_msg_type_name(type), route, (unsigned long long)covered,
                     (unsigned long long)chunks);
    free(seen);
    return frames;
}

void assert_close(const float *got, const double *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-6 + 1e-5 * fabs(want[i]);
        cr_assert(isfinite(got[i]), "%s[%zu] = %g is not finite", what, i, (double)got[i]);
        cr_assert(fabs((double)got[i] - want[i]) <= tol, "%s[%zu] = %.9g, expected %.9g", what, i,
                  (double)got[i], want[i]);
    }
}

/* The model sent to route as type: exactly expected, in one transfer. */
void assert_model(const rig *g, gdml_msg_type type, const char *route, const double *want,
                  uint64_t step, uint64_t version)
{
    float *got = calloc(g->n, sizeof(float));
    cr_assert_not_null(got);
    gdml_msg_header h;
    cr_assert_gt(sent_tensor(g, type, route, got, &h), 0, "no %s to '%s'", gdml_msg_type_name(type),
                 route);
    cr_assert_eq(h.step, step, "%s to '%s' at step %llu, expected %llu", gdml_msg_type_name(type),
                 route, (unsigned long long)h.step, (unsigned long long)step);
    cr_assert_eq(h.version, version, "%s to '%s' of version %llu, expected %llu",
                 gdml_msg_type_name(type), route, (unsigned long long)h.version,
                 (unsigned long long)version);
    cr_assert_str_eq(h.sender, "us-east");
    if (type == GDML_MSG_WELCOME)
        cr_assert_str_eq(h.text, g->layout.inputs == 4 ? SMALL : BIG);
    assert_close(got, want, g->n, gdml_msg_type_name(type));
    free(got);
}

double *dup_init(const rig *g)
{
    double *p = malloc(g->n * sizeof(double));
    cr_assert_not_null(p);
    for (size_t i = 0; i < g->n; i++)
        p[i] = g->init[i];
    return p;
}

/* Expected SGD step on chunk range [lo, hi) over the pushes given. */
void sgd_range(double *p, size_t lo, size_t hi, const float *const *grads, const double *batches,
               size_t k)
{
    double sum_b = 0;
    for (size_t j = 0; j < k; j++)
        sum_b += batches[j];
    for (size_t i = lo; i < hi; i++) {
        double s = 0;
        for (size_t j = 0; j < k; j++)
            s += batches[j] * grads[j][i];
        p[i] -= LR * s / sum_b;
    }
}

void sgd2(double *p, size_t n, const float *g1, double b1, const float *g2, double b2)
{
    const float *gs[2] = {g1, g2};
    double bs[2] = {b1, b2};
    sgd_range(p, 0, n, gs, bs, 2);
}

void sgd1(double *p, size_t n, const float *g1, double b1)
{
    const float *gs[1] = {g1};
    double bs[1] = {b1};
    sgd_range(p, 0, n, gs, bs, 1);
}

/* A deterministic gradient, different per worker w and step k, |g| <= 0.05. */
float *gradient(size_t n, unsigned w, unsigned k)
{
    float *g = malloc(n * sizeof(float));
    cr_assert_not_null(g);
    for (size_t i = 0; i < n; i++)
        g[i] = 0.01f * (float)((int)((i * 7 + w * 3 + k * 5) % 11) - 5);
    return g;
}

const test_action *exit_action(const rig *g)
{
    for (size_t i = 0; i < g->acts.n; i++)
        if (g->acts.a[i].act.kind == GDML_ACT_EXIT)
            return &g->acts.a[i];
    return NULL;
}

gdml_region_stats stats(const rig *g)
{
    gdml_region_stats s;
    gdml_region_stats_get(g->r, &s);
    return s;
}

/* Two workers join (w1: 600 samples via r1, w2: 400 via r2) and the coordinator welcomes. */
void rig_train(rig *g, const char *layout)
{
    rig_open(g);
    hello(g, "w1", "r1", 600);
    hello(g, "w2", "r2", 400);
    cr_assert_eq(test_count_sends(&g->acts, GDML_MSG_HELLO, ""), 1);
    welcome(g, layout);
    cr_assert_gt(test_count_sends(&g->acts, GDML_MSG_WELCOME, "r1"), 0);
    cr_assert_gt(test_count_sends(&g->acts, GDML_MSG_WELCOME, "r2"), 0);
    clear(g);
}

/* One BSP step of both workers, the expected model moved along. */
void step2(rig *g, double *want, unsigned step)
{
    float *g1 = gradient(g->n, 1, step), *g2 = gradient(g->n, 2, step);
    g->now += 10;
    push(g, "w1", "r1", step, 32, g1);
    push(g, "w2", "r2", step, 16, g2);
    sgd2(want, g->n, g1, 32, g2, 16);
    free(g1);
    free(g2);
}

/* The coordinator's GLOBAL of version 1 while a delta made from `sent` is in
 * flight: the expected live model becomes g + (x - sent), g = anchor + change. */
void global_in_flight(rig *g, double *want, double *anchor, const double *sent)
{
    float *change = gradient(g->n, 9, 0);
    g->now += 10;
    coord_tensor(g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    for (size_t i = 0; i < g->n; i++) {
        anchor[i] += change[i];
        want[i] = anchor[i] + (want[i] - sent[i]);
    }
    free(change);
}

/* The model sent to route in this batch of actions, with its step tag; false if none. */
bool model_to(const rig *g, const char *route, uint64_t *tag)
{
    const test_action *a = test_find_send(&g->acts, GDML_MSG_MODEL, route);
    if (!a)
        return false;
    *tag = a->h.step;
    return true;
}

void apply(double *want, size_t n, const float *grad)
{
    for (size_t i = 0; i < n; i++)
        want[i] -= LR * grad[i];
}
