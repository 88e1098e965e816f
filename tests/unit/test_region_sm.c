/*
 * test_region_sm.c - table tests of the regional parameter server's state
 * machine (server/region_sm.h): frames from workers (GDML_LINK_DOWN) and the
 * coordinator (GDML_LINK_UP), ticks and commands go in; the actions it
 * queues and its counters are checked. No socket, no clock: time is a
 * number the test advances.
 *
 * Every expected model is computed here, independently of the region: SGD
 * on the sample-weighted mean gradient, params -= lr * sum(b * g) / sum(b),
 * chunk by chunk over the samples that reached each chunk.
 */
#include "region_impl.h"
#include "region_sm.h"

#include "log.h"
#include "model.h"
#include "sm_support.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the rig: one region, the clock, and what it sent ---- */

#define SMALL "softmax 4 3"    /* 15 parameters: one chunk */
#define BIG "softmax 300000 2" /* 600002 parameters: three chunks */
#define SEED 7
#define LR 0.5
#define UP_MAX 4096

typedef struct up_frame {
    int64_t t;
    uint64_t wire;
    gdml_msg_type type;
} up_frame;

typedef struct rig {
    gdml_region_config cfg;
    char members[4][GDML_NAME_MAX];
    gdml_region *r;
    test_actions acts; /* what the region queued since the last clear */
    int64_t now;
    uint64_t seq; /* the next sequence number a test peer uses */
    gdml_layout layout;
    size_t n;
    float *init;         /* the initial model of SEED */
    up_frame up[UP_MAX]; /* every frame sent upstream, never cleared */
    size_t n_up;
} rig;

static void quiet(void)
{
    gdml_log_init("test_region_sm", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT);
}

TestSuite(region_sm, .init = quiet, .timeout = 120);

static void rig_config(rig *g)
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

static void drain(rig *g)
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

static void rig_open(rig *g)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&g->cfg, &g->r, &e), GDML_OK, "%s", e.text);
    g->now = 0;
    gdml_region_start(g->r, g->now);
    drain(g);
}

static void rig_fini(rig *g)
{
    test_actions_clear(&g->acts);
    free(g->acts.a);
    gdml_region_destroy(&g->r);
    cr_assert_null(g->r);
    free(g->init);
}

static void clear(rig *g)
{
    test_actions_clear(&g->acts);
}

/* Hands the region one frame, as received from name through route. */
static void feed(rig *g, int link, gdml_blob *frame, const char *name, const char *route)
{
    test_rx t;
    test_rx_from(&t, frame, name, route);
    gdml_region_on_frame(g->r, g->now, link, &t.rx);
    test_rx_fini(&t);
    drain(g);
}

static void feed_control(rig *g, int link, gdml_msg_type type, const char *name, const char *route,
                         uint64_t step, uint64_t count)
{
    gdml_blob *f = test_control(type, name, g->seq++, 0, step, count);
    feed(g, link, f, name, route);
    gdml_blob_unref(&f);
}

static void tick(rig *g, int64_t t)
{
    g->now = t;
    gdml_region_on_tick(g->r, t);
    drain(g);
}

static void hello(rig *g, const char *name, const char *route, uint64_t samples)
{
    feed_control(g, GDML_LINK_DOWN, GDML_MSG_HELLO, name, route, 0, samples);
}

/* A worker's gradient for step, weighing batch: its frames, one per chunk. */
static gdml_blob **push_frames(rig *g, const char *name, uint64_t step, uint64_t batch,
                               const float *grad, size_t *nf)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, name);
    h.seq = g->seq++;
    h.step = step;
    h.count = batch;
    h.metric = 0.25;
    return test_tensor_frames(&h, grad, g->n, NULL, nf);
}

static void push(rig *g, const char *name, const char *route, uint64_t step, uint64_t batch,
                 const float *grad)
{
    size_t nf;
    gdml_blob **f = push_frames(g, name, step, batch, grad, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(g, GDML_LINK_DOWN, f[i], name, route);
    test_frames_free(f, nf);
}

/* A tensor from the coordinator (WELCOME, GLOBAL), all its chunks. */
static void coord_tensor(rig *g, gdml_msg_type type, const char *text, uint64_t count,
                         uint64_t version, const float *x)
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

static void coord_control(rig *g, gdml_msg_type type, gdml_reason code, const char *text)
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
static void set_layout(rig *g, const char *text)
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
static void welcome(rig *g, const char *text)
{
    set_layout(g, text);
    float *zero = calloc(g->n, sizeof(float));
    cr_assert_not_null(zero);
    coord_tensor(g, GDML_MSG_WELCOME, text, SEED, 0, zero);
    free(zero);
}

static bool sent_to(const test_action *a, const char *route)
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
static size_t sent_tensor(const rig *g, gdml_msg_type type, const char *route, float *out,
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

static void assert_close(const float *got, const double *want, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++) {
        double tol = 1e-6 + 1e-5 * fabs(want[i]);
        cr_assert(isfinite(got[i]), "%s[%zu] = %g is not finite", what, i, (double)got[i]);
        cr_assert(fabs((double)got[i] - want[i]) <= tol, "%s[%zu] = %.9g, expected %.9g", what, i,
                  (double)got[i], want[i]);
    }
}

/* The model sent to route as type: exactly expected, in one transfer. */
static void assert_model(const rig *g, gdml_msg_type type, const char *route, const double *want,
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

static double *dup_init(const rig *g)
{
    double *p = malloc(g->n * sizeof(double));
    cr_assert_not_null(p);
    for (size_t i = 0; i < g->n; i++)
        p[i] = g->init[i];
    return p;
}

/* Expected SGD step on chunk range [lo, hi) over the pushes given. */
static void sgd_range(double *p, size_t lo, size_t hi, const float *const *grads,
                      const double *batches, size_t k)
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

static void sgd2(double *p, size_t n, const float *g1, double b1, const float *g2, double b2)
{
    const float *gs[2] = {g1, g2};
    double bs[2] = {b1, b2};
    sgd_range(p, 0, n, gs, bs, 2);
}

static void sgd1(double *p, size_t n, const float *g1, double b1)
{
    const float *gs[1] = {g1};
    double bs[1] = {b1};
    sgd_range(p, 0, n, gs, bs, 1);
}

/* A deterministic gradient, different per worker w and step k, |g| <= 0.05. */
static float *gradient(size_t n, unsigned w, unsigned k)
{
    float *g = malloc(n * sizeof(float));
    cr_assert_not_null(g);
    for (size_t i = 0; i < n; i++)
        g[i] = 0.01f * (float)((int)((i * 7 + w * 3 + k * 5) % 11) - 5);
    return g;
}

static const test_action *exit_action(const rig *g)
{
    for (size_t i = 0; i < g->acts.n; i++)
        if (g->acts.a[i].act.kind == GDML_ACT_EXIT)
            return &g->acts.a[i];
    return NULL;
}

static gdml_region_stats stats(const rig *g)
{
    gdml_region_stats s;
    gdml_region_stats_get(g->r, &s);
    return s;
}

/* Two workers join (w1: 600 samples via r1, w2: 400 via r2) and the coordinator welcomes. */
static void rig_train(rig *g, const char *layout)
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

/* ---- the run as it should go ---- */

Test(region_sm, full_flow_join_train_sync_global_stop)
{
    rig g;
    rig_config(&g);
    rig_open(&g);

    g.now = 1;
    hello(&g, "w1", "r1", 600);
    cr_assert_eq(g.acts.n, 0, "one of two workers joined: nothing to do yet");
    g.now = 2;
    hello(&g, "w2", "r2", 400);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 1, "HELLO upstream");
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_eq(up->h.count, 1000, "HELLO upstream declares %llu samples, expected 600 + 400",
                 (unsigned long long)up->h.count);
    cr_assert_str_eq(up->h.sender, "us-east");
    cr_assert_gt(up->h.seq, 1000, "sequence numbers start above seq_base");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_SEND), 1);
    clear(&g);

    g.now = 3;
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, NULL), 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0);
    cr_assert_eq(stats(&g).worker_joins, 2);
    clear(&g);

    double *anchor = dup_init(&g);
    for (unsigned round = 0; round < 2; round++) {
        for (unsigned k = 0; k < 3; k++) {
            unsigned step = round * 3 + k;
            float *g1 = gradient(g.n, 1, step), *g2 = gradient(g.n, 2, step);
            g.now += 10;
            push(&g, "w1", "r1", step, 32, g1);
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                         "step %u done with one of two gradients", step);
            push(&g, "w2", "r2", step, 16, g2);
            sgd2(want, g.n, g1, 32, g2, 16);
            free(g1);
            free(g2);
            if (k < 2) {
                assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, round);
                assert_model(&g, GDML_MSG_MODEL, "r2", want, step + 1, round);
                cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
                clear(&g);
                continue;
            }
            /* sync_every steps: the delta goes up, the workers wait for GLOBAL. */
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                         "a MODEL went out before the round's GLOBAL");
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1);
            float *delta = calloc(g.n, sizeof(float));
            gdml_msg_header dh;
            cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
            cr_assert_eq(dh.count, 1000, "DELTA weighs %llu samples", (unsigned long long)dh.count);
            cr_assert_eq(dh.version, round, "DELTA from version %llu, expected %u",
                         (unsigned long long)dh.version, round);
            cr_assert_eq(dh.step, round + 1, "DELTA of sync %llu, expected %u",
                         (unsigned long long)dh.step, round + 1);
            cr_assert_float_eq(dh.lr_steps, LR * 3, 1e-9);
            double *wd = malloc(g.n * sizeof(double));
            for (size_t i = 0; i < g.n; i++)
                wd[i] = want[i] - anchor[i];
            assert_close(delta, wd, g.n, "DELTA");
            free(wd);
            free(delta);
            gdml_region_stats s = stats(&g);
            cr_assert_eq(s.steps, step + 1);
            cr_assert_eq(s.syncs, round + 1);
            cr_assert_eq(s.pushes, 2 * (step + 1));
            clear(&g);

            /* GLOBAL: the model is the anchor plus the global change. */
            float *change = gradient(g.n, 9, round);
            g.now += 10;
            coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, round + 1, change);
            for (size_t i = 0; i < g.n; i++)
                want[i] = anchor[i] = anchor[i] + change[i];
            free(change);
            assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, round + 1);
            assert_model(&g, GDML_MSG_MODEL, "r2", want, step + 1, round + 1);
            cr_assert_eq(stats(&g).version, round + 1);
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
            clear(&g);
        }
    }

    g.now += 10;
    coord_control(&g, GDML_MSG_STOP, GDML_REASON_NONE, "the coordinator was stopped by a signal");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    /* The workers are told the coordinator's reason, not "training complete". */
    cr_assert_str_eq(test_find_send(&g.acts, GDML_MSG_STOP, "r1")->h.text,
                     "the coordinator was stopped by a signal");
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "STOP from the coordinator ends the run");
    cr_assert_eq(x->act.status, 0);
    cr_assert_eq(x->act.err, GDML_OK);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 1);
    clear(&g);
    /* Over: nothing more comes out. */
    float *g1 = gradient(g.n, 1, 6);
    push(&g, "w1", "r1", 6, 32, g1);
    tick(&g, g.now + 5000);
    cr_assert_eq(g.acts.n, 0);
    free(g1);
    free(want);
    free(anchor);
    rig_fini(&g);
}

/* ---- overlap: training goes on while the delta and GLOBAL are in flight ---- */

/* One BSP step of both workers, the expected model moved along. */
static void step2(rig *g, double *want, unsigned step)
{
    float *g1 = gradient(g->n, 1, step), *g2 = gradient(g->n, 2, step);
    g->now += 10;
    push(g, "w1", "r1", step, 32, g1);
    push(g, "w2", "r2", step, 16, g2);
    sgd2(want, g->n, g1, 32, g2, 16);
    free(g1);
    free(g2);
}

static void assert_delta(const rig *g, const double *want, const double *anchor, uint64_t version)
{
    float *delta = calloc(g->n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(g, GDML_MSG_DELTA, "", delta, &dh), 1, "no DELTA");
    cr_assert_eq(dh.version, version, "DELTA against version %llu, expected %llu",
                 (unsigned long long)dh.version, (unsigned long long)version);
    double *wd = malloc(g->n * sizeof(double));
    for (size_t i = 0; i < g->n; i++)
        wd[i] = want[i] - anchor[i];
    assert_close(delta, wd, g->n, "DELTA");
    free(wd);
    free(delta);
}

/* The coordinator's GLOBAL of version 1 while a delta made from `sent` is in
 * flight: the expected live model becomes g + (x - sent), g = anchor + change. */
static void global_in_flight(rig *g, double *want, double *anchor, const double *sent)
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

/* A WELCOME of version v, the initial model plus a change, while training:
 * the expected anchor and live model move by that change. */
static void welcome_again(rig *g, uint64_t v, double *want, double *anchor)
{
    float *change = gradient(g->n, 9, 0);
    coord_tensor(g, GDML_MSG_WELCOME, SMALL, SEED, v, change);
    for (size_t i = 0; i < g->n; i++) {
        anchor[i] += change[i];
        want[i] += change[i];
    }
    free(change);
}

/* Early start: the workers train on [model]'s initial parameters at once. */
static void rig_early(rig *g)
{
    rig_config(g);
    snprintf(g->cfg.early_layout, sizeof g->cfg.early_layout, "%s", SMALL);
    g->cfg.early_seed = SEED;
    rig_open(g);
    hello(g, "w1", "r1", 600);
    hello(g, "w2", "r2", 400);
    set_layout(g, SMALL);
}

Test(region_sm, early_start_trains_before_the_welcome_and_its_first_sync_waits_for_it)
{
    rig g;
    rig_early(&g);
    const test_action *h = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(h);
    cr_assert_str_empty(h->h.text, "its HELLO claims the coordinator's model: '%s'", h->h.text);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    clear(&g);
    step2(&g, want, 0);
    step2(&g, want, 1);
    clear(&g);
    step2(&g, want, 2); /* the sync is due: it waits for the coordinator's model */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers went on");
    clear(&g);
    /* Version 0 of the same seed: the three steps go on top of it. */
    float *zero = calloc(g.n, sizeof(float));
    coord_tensor(&g, GDML_MSG_WELCOME, SMALL, SEED, 0, zero);
    free(zero);
    assert_delta(&g, want, anchor, 0);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, early_steps_are_dropped_when_the_coordinator_sends_a_trained_model)
{
    /* A resumed job: steps taken from the initial model say nothing about
     * version 5, so the round starts afresh from it. */
    rig g;
    rig_early(&g);
    double *want = dup_init(&g), *anchor = dup_init(&g), *ignored = dup_init(&g);
    clear(&g);
    step2(&g, ignored, 0);
    step2(&g, ignored, 1);
    welcome_again(&g, 5, want, anchor);
    clear(&g);
    step2(&g, want, 2);
    step2(&g, want, 3);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "a sync after 2 steps of 3");
    step2(&g, want, 4);
    assert_delta(&g, want, anchor, 5);
    free(want);
    free(anchor);
    free(ignored);
    rig_fini(&g);
}

Test(region_sm, early_start_on_another_layout_than_the_coordinators_is_a_config_error)
{
    rig g;
    rig_early(&g);
    clear(&g);
    set_layout(&g, BIG);
    float *zero = calloc(g.n, sizeof(float));
    coord_tensor(&g, GDML_MSG_WELCOME, BIG, SEED, 0, zero);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "the region trains on a layout the coordinator does not");
    cr_assert_eq(x->act.status, 2);
    cr_assert(strstr(x->act.text, "early_start"), "the error names no remedy: %s", x->act.text);
    free(zero);
    rig_fini(&g);
}

Test(region_sm, a_welcome_while_training_keeps_the_progress_since_the_sync)
{
    /* The coordinator restarted on a newer version (or answered a HELLO that
     * declared more samples): the two steps since the last sync stay, on top
     * of the model it sends, and the sync still comes after three steps. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    step2(&g, want, 0);
    step2(&g, want, 1);
    clear(&g);
    welcome_again(&g, 5, want, anchor);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    step2(&g, want, 2);
    assert_delta(&g, want, anchor, 5);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, overlap_trains_on_and_global_keeps_the_progress_since_the_delta)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++) {
        step2(&g, want, step);
        if (step < 2)
            clear(&g);
    }
    /* The delta goes up, and the workers get the next model at once. */
    assert_delta(&g, want, anchor, 0);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 3, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 3, 0);
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    clear(&g);

    /* Two more steps while the delta is in flight. */
    step2(&g, want, 3);
    step2(&g, want, 4);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    clear(&g);

    /* GLOBAL: x = g + (x - x_sent), with g = anchor + change. */
    global_in_flight(&g, want, anchor, sent);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "GLOBAL mid-step sends no model: the step in progress goes on");
    cr_assert_eq(stats(&g).version, 1);
    clear(&g);

    /* The step finishes on the corrected model; the next sync (step 6) is
     * against version 1 and carries everything since the first delta. */
    step2(&g, want, 5);
    assert_delta(&g, want, anchor, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 6, 1);
    clear(&g);
    free(sent);
    free(want);
    free(anchor);
    rig_fini(&g);
}

Test(region_sm, overlap_waits_for_the_global_when_the_next_sync_comes_first)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++)
        step2(&g, want, step);
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    clear(&g);
    for (unsigned step = 3; step < 6; step++)
        step2(&g, want, step);
    /* The second sync is due with the first still in flight: one delta at
     * a time, and the workers wait. */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "two deltas in flight");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 2,
                 "steps 4 and 5 got models; step 6 must wait");
    clear(&g);
    /* A push for the step the workers wait at is not taken meanwhile. */
    float *g1 = gradient(g.n, 1, 6);
    push(&g, "w1", "r1", 6, 32, g1);
    free(g1);
    cr_assert_eq(stats(&g).steps, 6);
    clear(&g);

    global_in_flight(&g, want, anchor, sent);
    /* At once: the next delta (against version 1) and the model. */
    assert_delta(&g, want, anchor, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 6, 1);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 6, 1);
    gdml_region_stats s = stats(&g);
    cr_assert_eq(s.syncs, 2);
    cr_assert_eq(s.version, 1);
    clear(&g);
    free(sent);
    free(want);
    free(anchor);
    rig_fini(&g);
}

/* ---- SSP and ASP inside the data center ---- */

/* The model sent to route in this batch of actions, with its step tag; false if none. */
static bool model_to(const rig *g, const char *route, uint64_t *tag)
{
    const test_action *a = test_find_send(&g->acts, GDML_MSG_MODEL, route);
    if (!a)
        return false;
    *tag = a->h.step;
    return true;
}

static void apply(double *want, size_t n, const float *grad)
{
    for (size_t i = 0; i < n; i++)
        want[i] -= LR * grad[i];
}

Test(region_sm, ssp_applies_each_gradient_and_holds_a_worker_too_far_ahead)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    uint64_t tag;
    float *a0 = gradient(g.n, 1, 0), *a1 = gradient(g.n, 1, 1), *b0 = gradient(g.n, 2, 0);
    /* w1's first gradient: applied alone, and w1 (1 ahead) gets the model at once. */
    push(&g, "w1", "r1", 0, 32, a0);
    apply(want, g.n, a0);
    cr_assert(model_to(&g, "r1", &tag), "w1 is 1 ahead, within the bound: no wait");
    cr_assert_eq(tag, 1);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 0, "the step is the slowest worker's clock");
    clear(&g);
    /* Its second: 2 ahead of w2, so it waits. */
    push(&g, "w1", "r1", 1, 32, a1);
    apply(want, g.n, a1);
    cr_assert_not(model_to(&g, "r1", &tag), "w1 is 2 ahead: it must wait");
    clear(&g);
    /* w2's first moves the step to 1: both get the model, each with its own tag. */
    push(&g, "w2", "r2", 0, 16, b0);
    apply(want, g.n, b0);
    cr_assert_eq(stats(&g).steps, 1);
    cr_assert(model_to(&g, "r2", &tag));
    cr_assert_eq(tag, 1);
    cr_assert(model_to(&g, "r1", &tag), "the slowest caught up: w1 goes on");
    cr_assert_eq(tag, 2);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    clear(&g);
    /* A push tagged with an old step is stale. */
    push(&g, "w2", "r2", 0, 16, b0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 1);
    free(a0);
    free(a1);
    free(b0);
    free(want);
    rig_fini(&g);
}

Test(region_sm, asp_never_holds_a_worker_and_syncs_on_the_slowest_clock)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = UINT64_MAX;
    g.cfg.sync_every = 2;
    rig_train(&g, SMALL);
    uint64_t tag;
    for (unsigned k = 0; k < 5; k++) { /* w1 runs five ahead, never held */
        float *a = gradient(g.n, 1, k);
        push(&g, "w1", "r1", k, 32, a);
        free(a);
        cr_assert(model_to(&g, "r1", &tag), "ASP held w1 at %u", k);
        cr_assert_eq(tag, k + 1);
        cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0, "no step yet: no sync");
        clear(&g);
    }
    for (unsigned k = 0; k < 2; k++) { /* w2's two gradients make two steps: a sync */
        float *b = gradient(g.n, 2, k);
        push(&g, "w2", "r2", k, 16, b);
        free(b);
    }
    cr_assert_eq(stats(&g).steps, 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "sync_every = 2 steps");
    rig_fini(&g);
}

Test(region_sm, ssp_a_worker_that_goes_silent_is_not_waited_for)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    uint64_t tag;
    float *a = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, a);
    clear(&g);
    push(&g, "w1", "r1", 1, 32, a);
    cr_assert_not(model_to(&g, "r1", &tag));
    clear(&g);
    /* w2 falls silent (w1 keeps beating): the step is w1's clock now, and w1 is released. */
    for (int k = 0; k < 5; k++) {
        g.now += 1000;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
        tick(&g, g.now);
    }
    cr_assert(model_to(&g, "r1", &tag), "w1 waits on a silent worker");
    cr_assert_eq(tag, 2);
    free(a);
    rig_fini(&g);
}

/* ---- checkpoints ---- */

/* A copy of what a checkpoint holds, as the loop would read it back. */
typedef struct ckpt_copy {
    gdml_version_meta meta;
    char layout[GDML_LAYOUT_MAX];
    gdml_store_tensor t[GDML_STORE_MAX_TENSORS];
    float *data[GDML_STORE_MAX_TENSORS];
    size_t n;
} ckpt_copy;

static void take_checkpoint(rig *g, ckpt_copy *c)
{
    cr_assert_eq(test_count_kind(&g->acts, GDML_ACT_COMMIT), 1, "no checkpoint queued");
    const char *layout;
    const gdml_store_tensor *t;
    size_t n;
    gdml_version_meta *m = gdml_region_checkpoint(g->r, g->now, &layout, &t, &n);
    memset(c, 0, sizeof *c);
    c->meta = *m;
    snprintf(c->layout, sizeof c->layout, "%s", layout);
    for (size_t i = 0; i < n; i++) {
        c->data[i] = malloc(t[i].n * sizeof(float));
        memcpy(c->data[i], t[i].data, t[i].n * sizeof(float));
        c->t[i] = (gdml_store_tensor){.name = t[i].name, .data = c->data[i], .n = t[i].n};
    }
    c->n = n;
    gdml_region_on_checkpointed(g->r, g->now, GDML_OK, NULL);
}

static const float *ckpt_tensor(const ckpt_copy *c, const char *name)
{
    for (size_t i = 0; i < c->n; i++)
        if (strcmp(c->t[i].name, name) == 0)
            return c->t[i].data;
    return NULL;
}

static void ckpt_free(ckpt_copy *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->data[i]);
}

Test(region_sm, a_restarted_region_resumes_its_checkpoint_on_top_of_the_current_model)
{
    rig g;
    rig_config(&g);
    g.cfg.overlap = true;
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    for (unsigned step = 0; step < 3; step++) {
        step2(&g, want, step);
        if (step < 2) {
            cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_COMMIT), 0, "a checkpoint mid-round");
            clear(&g);
        }
    }
    /* After the delta: a checkpoint, with the model the delta was made from. */
    ckpt_copy c1;
    take_checkpoint(&g, &c1);
    cr_assert_str_eq(c1.meta.rule, "region");
    cr_assert_eq(c1.meta.round, 1, "syncs");
    cr_assert_eq((uint64_t)c1.meta.lr_steps, 3, "steps");
    cr_assert_str_eq(c1.meta.regions[0].name, "us-east");
    cr_assert_not_null(ckpt_tensor(&c1, "sent"), "a delta is in flight");
    cr_assert_null(ckpt_tensor(&c1, "residual"), "a dense uplink's residual is zero: not kept");
    clear(&g);
    /* Two steps on, then the GLOBAL: another checkpoint, nothing in flight. */
    double *sent = malloc(g.n * sizeof(double));
    memcpy(sent, want, g.n * sizeof(double));
    step2(&g, want, 3);
    step2(&g, want, 4);
    clear(&g);
    global_in_flight(&g, want, anchor, sent);
    ckpt_copy c2;
    take_checkpoint(&g, &c2);
    cr_assert_null(ckpt_tensor(&c2, "sent"));
    cr_assert_eq(c2.meta.version, c1.meta.version + 1);
    cr_assert_eq(c2.meta.regions[0].seq, 1, "the anchor is version 1");
    cr_assert_eq(c2.meta.regions[0].samples, 2, "two steps since the sync");
    uint64_t last_seq = c2.meta.seq;
    rig_fini(&g);

    /* Killed, restarted: the checkpoint is read before the coordinator is heard. */
    rig h;
    rig_config(&h);
    h.cfg.overlap = true;
    h.cfg.checkpoint = true;
    h.cfg.seq_base = 10; /* below the checkpoint's: the checkpoint's wins */
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_region_resume(h.r, &c2.meta, c2.layout, c2.t, c2.n, &e), GDML_OK, "%s",
                 e.text);
    h.now = 0;
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    clear(&h);
    /* The coordinator has moved on to version 5, g5 = initial + big. */
    set_layout(&h, SMALL);
    float *g5 = gradient(h.n, 4, 4);
    coord_tensor(&h, GDML_MSG_WELCOME, SMALL, SEED, 5, g5);
    /* x = g5 + (x_c - anchor_c): its two steps since the sync stay. */
    const float *xc = ckpt_tensor(&c2, "params"), *ac = ckpt_tensor(&c2, "anchor");
    double *expect = malloc(h.n * sizeof(double));
    for (size_t i = 0; i < h.n; i++)
        expect[i] = (double)h.init[i] + g5[i] + ((double)xc[i] - ac[i]);
    assert_model(&h, GDML_MSG_WELCOME, "r1", expect, 5, 5);
    gdml_region_stats s = stats(&h);
    cr_assert_eq(s.steps, 5, "steps from the checkpoint");
    cr_assert_eq(s.syncs, 1);
    clear(&h);
    /* The round goes on from its restored clock: one more step is a sync,
     * under a sequence number above any the checkpoint used. */
    float *g1 = gradient(h.n, 1, 5), *g2 = gradient(h.n, 2, 5);
    push(&h, "w1", "r1", 5, 32, g1);
    push(&h, "w2", "r2", 5, 16, g2);
    free(g1);
    free(g2);
    const test_action *d = test_find_send(&h.acts, GDML_MSG_DELTA, "");
    cr_assert_not_null(d, "sync_every = 3: the restored round ends at step 6");
    cr_assert_gt(d->h.seq, last_seq);
    cr_assert_eq(d->h.version, 5);
    free(g5);
    free(expect);
    free(sent);
    free(want);
    free(anchor);
    ckpt_free(&c1);
    ckpt_free(&c2);
    rig_fini(&h);
}

/* Two steps of both workers under server.optimizer = momentum (0.5): the
 * velocity carries over, and a checkpoint keeps it for a restart. */
Test(region_sm, momentum_steps_with_velocity_and_a_checkpoint_keeps_it)
{
    rig g;
    rig_config(&g);
    g.cfg.optim = (gdml_optim_config){.kind = "momentum", .momentum = 0.5};
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g), *v = calloc(g.n, sizeof(double));
    for (unsigned step = 0; step < 3; step++) {
        float *g1 = gradient(g.n, 1, step), *g2 = gradient(g.n, 2, step);
        push(&g, "w1", "r1", step, 32, g1);
        push(&g, "w2", "r2", step, 16, g2);
        for (size_t i = 0; i < g.n; i++) {
            double mean = (32.0 * g1[i] + 16.0 * g2[i]) / 48.0;
            v[i] = 0.5 * v[i] + mean;
            want[i] -= LR * v[i];
        }
        if (step < 2)
            assert_model(&g, GDML_MSG_MODEL, "r1", want, step + 1, 0);
        free(g1);
        free(g2);
        if (step < 2)
            clear(&g);
    }
    ckpt_copy c;
    take_checkpoint(&g, &c);
    const float *velocity = ckpt_tensor(&c, "opt_0");
    cr_assert_not_null(velocity, "the checkpoint lacks the velocity");
    cr_assert_null(ckpt_tensor(&c, "opt_1"));
    for (size_t i = 0; i < g.n; i++)
        cr_assert(fabs(velocity[i] - v[i]) < 1e-5, "velocity %zu: %g, want %g", i,
                  (double)velocity[i], v[i]);
    rig_fini(&g);
    /* Restarted on it: the next step goes on with the velocity it had. */
    rig h;
    rig_config(&h);
    h.cfg.optim = (gdml_optim_config){.kind = "momentum", .momentum = 0.5};
    h.cfg.checkpoint = true;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK, "%s", e.text);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_OK, "%s", e.text);
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    welcome(&h, SMALL);
    clear(&h);
    float *g1 = gradient(h.n, 1, 3), *g2 = gradient(h.n, 2, 3);
    push(&h, "w1", "r1", 3, 32, g1);
    push(&h, "w2", "r2", 3, 16, g2);
    for (size_t i = 0; i < h.n; i++) {
        v[i] = 0.5 * v[i] + (32.0 * g1[i] + 16.0 * g2[i]) / 48.0;
        want[i] -= LR * v[i];
    }
    assert_model(&h, GDML_MSG_MODEL, "r1", want, 4, 0);
    free(g1);
    free(g2);
    ckpt_free(&c);
    free(want);
    free(v);
    rig_fini(&h);
}

Test(region_sm, a_checkpoint_of_another_region_or_model_is_not_used)
{
    rig g;
    rig_config(&g);
    g.cfg.checkpoint = true;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    for (unsigned step = 0; step < 3; step++)
        step2(&g, want, step);
    ckpt_copy c;
    take_checkpoint(&g, &c);
    rig_fini(&g);

    rig h;
    rig_config(&h);
    h.cfg.name = "eu-west";
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_ERR_INVALID);
    cr_assert(strstr(e.text, "not a checkpoint of region 'eu-west'"), "%s", e.text);
    gdml_region_destroy(&h.r);

    /* This region's, but the coordinator now trains a bigger model: afresh. */
    rig_config(&h);
    cr_assert_eq(gdml_region_new(&h.cfg, &h.r, &e), GDML_OK);
    cr_assert_eq(gdml_region_resume(h.r, &c.meta, c.layout, c.t, c.n, &e), GDML_OK, "%s", e.text);
    h.now = 0;
    gdml_region_start(h.r, h.now);
    drain(&h);
    hello(&h, "w1", "r1", 600);
    hello(&h, "w2", "r2", 400);
    clear(&h);
    welcome(&h, BIG);
    double *init = dup_init(&h);
    assert_model(&h, GDML_MSG_WELCOME, "r1", init, 0, 0);
    cr_assert_eq(stats(&h).steps, 0);
    free(init);
    free(want);
    ckpt_free(&c);
    rig_fini(&h);
}

/* ---- joining ---- */

Test(region_sm, member_list_admits_listed_refuses_others)
{
    rig g;
    rig_config(&g);
    snprintf(g.members[0], GDML_NAME_MAX, "w1");
    snprintf(g.members[1], GDML_NAME_MAX, "w2");
    g.cfg.members = (const char(*)[GDML_NAME_MAX])g.members;
    g.cfg.n_members = 2;
    rig_open(&g);

    hello(&g, "mallory", "r3", 500);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_ALLOWED], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r3");
    cr_assert_not_null(err, "the refused worker is told why");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_ALLOWED);
    cr_assert_eq(stats(&g).worker_joins, 0);
    clear(&g);

    hello(&g, "w1", "r1", 600);
    hello(&g, "mallory", "r4", 500); /* a second try does not take a slot either */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0);
    hello(&g, "w2", "r2", 400);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_ALLOWED], 2);
    cr_assert_eq(stats(&g).worker_joins, 2);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "both listed workers joined: HELLO upstream");
    cr_assert_eq(up->h.count, 1000);
    clear(&g);
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    assert_model(&g, GDML_MSG_WELCOME, "r2", want, 0, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, "r4"), 0);
    free(want);
    rig_fini(&g);
}

Test(region_sm, hello_sample_count_out_of_bounds_does_not_join)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 0);
    hello(&g, "w1", "r1", 100001);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), 2);
    for (size_t i = 0; i < g.acts.n; i++)
        cr_assert_eq(g.acts.a[i].h.code, GDML_REASON_BOUNDS);
    cr_assert_eq(stats(&g).worker_joins, 0);
    clear(&g);

    hello(&g, "w2", "r2", 100000); /* the largest allowed */
    cr_assert_eq(stats(&g).worker_joins, 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HELLO, ""), 0,
                 "the refused w1 counted as one of the two workers");
    /* A PUSH from the refused worker: it is no member. */
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    clear(&g);
    hello(&g, "w1", "r1", 1);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up);
    cr_assert_eq(up->h.count, 100001, "the refused declarations were not counted");
    rig_fini(&g);
}

/* ---- pushes that are refused or ignored ---- */

Test(region_sm, push_before_hello_is_not_member)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    set_layout(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err, "the stranger is told to send HELLO");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_MEMBER);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_SEND), 1);
    cr_assert_eq(stats(&g).pushes, 0);
    cr_assert_eq(stats(&g).worker_joins, 0);
    free(g1);
    rig_fini(&g);
}

Test(region_sm, push_from_known_name_on_other_route_is_not_member)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *bad = gradient(g.n, 5, 5);
    push(&g, "w1", "r9", 0, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r9");
    cr_assert_not_null(err, "the other route is answered");
    cr_assert_eq(err->h.code, GDML_REASON_NOT_MEMBER);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), 0);
    cr_assert_eq(stats(&g).pushes, 0);
    clear(&g);
    /* The real w1 and w2 make the step: the impostor's gradient is not in it. */
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r9"), 0);
    free(g1);
    free(g2);
    free(bad);
    free(want);
    rig_fini(&g);
}

Test(region_sm, push_for_wrong_step_is_stale_and_step_undisturbed)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *bad = gradient(g.n, 5, 5);
    push(&g, "w1", "r1", 5, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err);
    cr_assert_eq(err->h.code, GDML_REASON_STALE);
    cr_assert_eq(stats(&g).steps, 0);
    clear(&g);
    push(&g, "w2", "r2", 0, 16, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w1's stale push did not count as its gradient");
    push(&g, "w1", "r1", 0, 32, g1);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    cr_assert_eq(stats(&g).pushes, 2);
    clear(&g);
    /* A push for the step just done is stale too. */
    push(&g, "w1", "r1", 0, 32, bad);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_STALE], 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    free(g1);
    free(g2);
    free(bad);
    free(want);
    rig_fini(&g);
}

Test(region_sm, second_push_for_same_step_ignored)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0), *again = gradient(g.n, 7, 3);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w1", "r1", 0, 32, again); /* a new transfer, same step */
    push(&g, "w1", "r1", 0, 32, g1);    /* and the first once more */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w1's repeated pushes did not stand in for w2's");
    cr_assert_eq(stats(&g).pushes, 1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).pushes, 2);
    cr_assert_eq(stats(&g).steps, 1);
    free(g1);
    free(g2);
    free(again);
    free(want);
    rig_fini(&g);
}

Test(region_sm, restarted_multichunk_push_counts_worker_once)
{
    /* w1 sends chunk 0 of its push, then sends the same gradient again as
     * a new transfer (it got its model again and pushed again). Each chunk's
     * mean must use w1 once. */
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    cr_assert_eq(gdml_chunk_count(g.n), 3);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t nf;
    gdml_blob **first = push_frames(&g, "w1", 0, 30, g1, &nf);
    cr_assert_eq(nf, 3);
    feed(&g, GDML_LINK_DOWN, first[0], "w1", "r1");
    test_frames_free(first, nf);
    push(&g, "w1", "r1", 0, 30, g1);
    push(&g, "w2", "r2", 0, 10, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 30, g2, 10);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_sm, push_count_above_declared_samples_is_bounds)
{
    /* One row per weight a push may not have: its HELLO declared 600 samples. */
    const uint64_t counts[] = {(uint64_t)1 << 40, 601, 0};
    for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
        rig g;
        rig_config(&g);
        rig_train(&g, SMALL);
        float *g1 = gradient(g.n, 1, 0);
        push(&g, "w1", "r1", 0, counts[c], g1);
        cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 1, "count %llu",
                     (unsigned long long)counts[c]);
        const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
        cr_assert_not_null(err, "count %llu: w1 is told", (unsigned long long)counts[c]);
        cr_assert_eq(err->h.code, GDML_REASON_BOUNDS);
        cr_assert_eq(stats(&g).pushes, 0);
        cr_assert_eq(stats(&g).steps, 0);
        cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
        free(g1);
        rig_fini(&g);
    }
}

/* ---- norms ---- */

static float *huge(size_t n)
{
    float *x = malloc(n * sizeof(float));
    cr_assert_not_null(x);
    for (size_t i = 0; i < n; i++)
        x[i] = (i % 2 ? -1e30f : 1e30f);
    return x;
}

Test(region_sm, huge_gradient_dropped_as_norm_params_stay_finite)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, h);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 1);
    const test_action *err = test_find_send(&g.acts, GDML_MSG_ERROR, "r1");
    cr_assert_not_null(err);
    cr_assert_eq(err->h.code, GDML_REASON_NORM);
    cr_assert_eq(stats(&g).pushes, 0);
    push(&g, "w2", "r2", 0, 16, g2);
    /* Whenever the step completes (at once, or once w1 is gone), it is w2's alone. */
    gdml_region_on_dropped(g.r, g.now, &(gdml_peer){0});
    gdml_peer r1 = test_route("r1");
    if (test_count_sends(&g.acts, GDML_MSG_MODEL, "r2") == 0) {
        gdml_region_on_dropped(g.r, g.now, &r1);
        drain(&g);
    }
    double *want = dup_init(&g);
    sgd1(want, g.n, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    free(h);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_sm, norm_refused_worker_is_excused_for_the_step)
{
    /* A worker whose gradient is refused still beats, so it never goes silent:
     * the step goes on at once without it, and the next step waits for it again. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g2 = gradient(g.n, 2, 0);
    g.now = 100;
    push(&g, "w1", "r1", 0, 32, h);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd1(want, g.n, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    clear(&g);
    push(&g, "w2", "r2", 1, 16, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "step 1 did not wait for the excused worker of step 0");
    free(h);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_sm, a_step_whose_every_gradient_is_refused_is_not_taken)
{
    /* Nothing was learned: the step would only bring the sync closer. Each
     * refused worker is sent the same step's model again, and the step is
     * taken when a gradient gets through. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *h = huge(g.n), *g1 = gradient(g.n, 1, 0);
    push(&g, "w1", "r1", 0, 32, h);
    push(&g, "w2", "r2", 0, 16, h);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 2);
    cr_assert_eq(stats(&g).steps, 0, "a step with no gradient in was taken");
    uint64_t tag;
    cr_assert(model_to(&g, "r1", &tag), "w1 was not sent the model again");
    cr_assert_eq(tag, 0);
    cr_assert(model_to(&g, "r2", &tag), "w2 was not sent the model again");
    cr_assert_eq(tag, 0);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 0, 0);
    clear(&g);
    /* Their next tries at step 0 are taken as new pushes. */
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, h);
    cr_assert_eq(stats(&g).steps, 1);
    sgd1(want, g.n, g1, 32);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(h);
    free(g1);
    free(want);
    rig_fini(&g);
}

Test(region_sm, ssp_a_worker_whose_gradients_are_refused_does_not_hold_the_others)
{
    rig g;
    rig_config(&g);
    g.cfg.lan_staleness = 1;
    g.cfg.sync_every = 100;
    rig_train(&g, SMALL);
    float *h = huge(g.n);
    double *want = dup_init(&g);
    uint64_t tag;
    for (unsigned k = 0; k < 6; k++) {
        float *a = gradient(g.n, 1, k);
        push(&g, "w2", "r2", k, 16, h);
        cr_assert(model_to(&g, "r2", &tag), "w2 was not sent the model after a refusal at %u", k);
        cr_assert_eq(tag, k + 1, "a refused gradient still moves its worker's clock");
        push(&g, "w1", "r1", k, 32, a);
        apply(want, g.n, a);
        cr_assert(model_to(&g, "r1", &tag),
                  "w1 was held at %u by a worker whose gradients "
                  "are refused",
                  k);
        cr_assert_eq(tag, k + 1);
        free(a);
        clear(&g);
    }
    cr_assert_eq(stats(&g).steps, 6);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NORM], 6);
    push(&g, "w1", "r1", 6, 32, h); /* w1's own refusal: nothing applied */
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 7, 0);
    free(h);
    free(want);
    rig_fini(&g);
}

/* ---- chunks ---- */

Test(region_sm, multichunk_gradient_out_of_order_with_duplicate)
{
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    cr_assert_eq(gdml_chunk_count(g.n), 3);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t n1, n2;
    gdml_blob **f1 = push_frames(&g, "w1", 0, 30, g1, &n1);
    gdml_blob **f2 = push_frames(&g, "w2", 0, 10, g2, &n2);
    cr_assert_eq(n1, 3);
    cr_assert_eq(n2, 3);
    feed(&g, GDML_LINK_DOWN, f1[2], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f2[0], "w2", "r2");
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1"); /* duplicate */
    cr_assert_eq(stats(&g).rejected[GDML_REASON_DUPLICATE], 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, NULL), 0,
                 "a duplicate chunk is dropped quietly");
    feed(&g, GDML_LINK_DOWN, f2[2], "w2", "r2");
    feed(&g, GDML_LINK_DOWN, f2[1], "w2", "r2");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "the step completed before w1's last chunk");
    feed(&g, GDML_LINK_DOWN, f1[1], "w1", "r1");
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 30, g2, 10);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(stats(&g).pushes, 2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 3);
    test_frames_free(f1, n1);
    test_frames_free(f2, n2);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_sm, worker_dies_mid_push_per_chunk_weights)
{
    rig g;
    rig_config(&g);
    rig_train(&g, BIG);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    size_t n1;
    gdml_blob **f1 = push_frames(&g, "w1", 0, 30, g1, &n1);
    cr_assert_eq(n1, 3);
    feed(&g, GDML_LINK_DOWN, f1[0], "w1", "r1");
    feed(&g, GDML_LINK_DOWN, f1[2], "w1", "r1");
    push(&g, "w2", "r2", 0, 10, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0);
    gdml_peer r1 = test_route("r1");
    gdml_region_on_dropped(g.r, g.now, &r1);
    drain(&g);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_SLOW], 1);
    /* Chunks 0 and 2: both workers; chunk 1: w2 alone. */
    double *want = dup_init(&g);
    const float *both[2] = {g1, g2};
    double bb[2] = {30, 10};
    const float *one[1] = {g2};
    double b1[1] = {10};
    size_t c = (size_t)GDML_CHUNK_ELEMS;
    sgd_range(want, 0, c, both, bb, 2);
    sgd_range(want, c, 2 * c, one, b1, 1);
    sgd_range(want, 2 * c, g.n, both, bb, 2);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0, "the dropped w1 is not sent");
    cr_assert_eq(stats(&g).steps, 1);
    test_frames_free(f1, n1);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

/* ---- silent, dropped and restarted workers ---- */

Test(region_sm, silent_worker_not_waited_for_then_joined_again)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* all at t = 0 */
    float *g1 = gradient(g.n, 1, 0);
    g.now = 2000;
    push(&g, "w1", "r1", 0, 32, g1);
    tick(&g, 3000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "w2 is not silent yet");
    clear(&g);
    tick(&g, 3001);
    double *want = dup_init(&g);
    sgd1(want, g.n, g1, 32);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    cr_assert_eq(stats(&g).steps, 1);
    clear(&g);
    free(g1);

    /* w2 speaks again: it is awaited again. */
    g.now = 3100;
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 0);
    float *a = gradient(g.n, 1, 1), *b = gradient(g.n, 2, 1);
    push(&g, "w1", "r1", 1, 32, a);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0,
                 "w2 is heard from again, so the step waits for it");
    push(&g, "w2", "r2", 1, 16, b);
    sgd2(want, g.n, a, 32, b, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 2, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 2, 0);
    free(a);
    free(b);
    free(want);
    rig_fini(&g);
}

Test(region_sm, rejoin_mid_training_gets_welcome_with_live_model)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    clear(&g);
    /* w1 restarts: a new connection, and more samples than before. */
    hello(&g, "w1", "r1b", 900);
    assert_model(&g, GDML_MSG_WELCOME, "r1b", want, 1, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_WELCOME, "r2"), 0);
    cr_assert_eq(stats(&g).worker_joins, 3);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "more samples than the coordinator was told: HELLO again");
    cr_assert_eq(up->h.count, 1300);
    clear(&g);
    /* Its old connection is no longer believed. */
    float *a = gradient(g.n, 1, 1), *b = gradient(g.n, 2, 1);
    push(&g, "w1", "r1", 1, 32, b);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_NOT_MEMBER], 1);
    cr_assert_not_null(test_find_send(&g.acts, GDML_MSG_ERROR, "r1"));
    push(&g, "w1", "r1b", 1, 32, a);
    push(&g, "w2", "r2", 1, 16, b);
    sgd2(want, g.n, a, 32, b, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1b", want, 2, 0);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 2, 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0);
    free(g1);
    free(g2);
    free(a);
    free(b);
    free(want);
    rig_fini(&g);
}

Test(region_sm, rejoin_after_push_counts_worker_once)
{
    /* w1 pushes, restarts before the step is done, gets its WELCOME (the same
     * model) and pushes the same gradient again: the step uses w1 once. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    hello(&g, "w1", "r1b", 600);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1b", want, 0, 0);
    push(&g, "w1", "r1b", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

/* ---- the coordinator's side ---- */

Test(region_sm, coordinator_error_is_advisory_not_member_rejoins)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* HELLO upstream at t = 0 */
    g.now = 100;
    coord_control(&g, GDML_MSG_ERROR, GDML_REASON_STALE, "delta 3 is stale");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "ERROR is advisory");
    cr_assert_eq(g.acts.n, 0);
    g.now = 1500;
    coord_control(&g, GDML_MSG_ERROR, GDML_REASON_NOT_MEMBER, "send HELLO first");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    const test_action *up = test_find_send(&g.acts, GDML_MSG_HELLO, "");
    cr_assert_not_null(up, "NOT_MEMBER from the coordinator: join again");
    cr_assert_eq(up->h.count, 1000);
    cr_assert_eq(up->h.code, GDML_REASON_NONE);
    cr_assert_str_eq(up->h.text, SMALL, "a HELLO after WELCOME names the layout it holds");
    clear(&g);
    /* Training goes on. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

Test(region_sm, global_before_welcome_is_unexpected)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    hello(&g, "w2", "r2", 400);
    clear(&g);
    set_layout(&g, SMALL);
    float *change = gradient(g.n, 9, 0);
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], 1);
    cr_assert_eq(g.acts.n, 0, "no reply to the coordinator, no model to the workers");
    cr_assert_eq(stats(&g).version, 0);
    /* The WELCOME that follows still starts the run from the initial model. */
    welcome(&g, SMALL);
    double *want = dup_init(&g);
    assert_model(&g, GDML_MSG_WELCOME, "r1", want, 0, 0);
    free(change);
    free(want);
    rig_fini(&g);
}

Test(region_sm, unexpected_types_from_either_side_counted)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    const gdml_msg_type from_worker[] = {GDML_MSG_WELCOME, GDML_MSG_MODEL, GDML_MSG_DELTA,
                                         GDML_MSG_GLOBAL, GDML_MSG_STOP};
    const gdml_msg_type from_coord[] = {GDML_MSG_HELLO, GDML_MSG_PUSH, GDML_MSG_MODEL,
                                        GDML_MSG_DELTA, GDML_MSG_PULL, GDML_MSG_LEAVE};
    size_t nw = sizeof from_worker / sizeof from_worker[0];
    size_t nc = sizeof from_coord / sizeof from_coord[0];
    for (size_t i = 0; i < nw; i++)
        feed_control(&g, GDML_LINK_DOWN, from_worker[i], "w1", "r1", 0, 1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], nw);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_ERROR, "r1"), nw);
    for (size_t i = 0; i < g.acts.n; i++)
        cr_assert_eq(g.acts.a[i].h.code, GDML_REASON_UNEXPECTED);
    clear(&g);
    for (size_t i = 0; i < nc; i++)
        feed_control(&g, GDML_LINK_UP, from_coord[i], "coordinator", "", 0, 1);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_UNEXPECTED], nw + nc);
    cr_assert_eq(g.acts.n, 0, "the coordinator is not argued with");
    /* Nothing else changed: the step goes on. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    double *want = dup_init(&g);
    sgd2(want, g.n, g1, 32, g2, 16);
    assert_model(&g, GDML_MSG_MODEL, "r2", want, 1, 0);
    free(g1);
    free(g2);
    free(want);
    rig_fini(&g);
}

/* ---- the uplink budget ---- */

/* The wire bytes of the first DELTA with no budget. */
static uint64_t probe_delta_wire(void)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    for (unsigned k = 0; k < 3; k++) {
        float *g1 = gradient(g.n, 1, k), *g2 = gradient(g.n, 2, k);
        g.now += 10;
        push(&g, "w1", "r1", k, 32, g1);
        push(&g, "w2", "r2", k, 16, g2);
        free(g1);
        free(g2);
    }
    uint64_t wire = 0;
    for (size_t i = 0; i < g.n_up; i++)
        if (g.up[i].type == GDML_MSG_DELTA)
            wire += g.up[i].wire;
    cr_assert_gt(wire, 0);
    rig_fini(&g);
    return wire;
}

/* Three steps from step `from`, 10 ms apart; the expected model follows. */
static void three_steps(rig *g, unsigned from, double *want)
{
    for (unsigned k = from; k < from + 3; k++) {
        float *g1 = gradient(g->n, 1, k), *g2 = gradient(g->n, 2, k);
        g->now += 10;
        push(g, "w1", "r1", k, 32, g1);
        push(g, "w2", "r2", k, 16, g2);
        sgd2(want, g->n, g1, 32, g2, 16);
        free(g1);
        free(g2);
    }
}

/* The holding test's loop: workers push whenever a model comes. */
typedef struct hold_run {
    uint64_t step, deltas, globals, model_after_global;
    int64_t delta_at;
    bool pending_global;
    float *change;
} hold_run;

/* Takes what the region queued: checks it, and answers as the workers would. */
static void hold_handle(hold_run *h, rig *g)
{
    for (;;) {
        const test_action *x = exit_action(g);
        cr_assert_null(x, "the run ended at %lld ms: %s", (long long)g->now, x ? x->act.text : "");
        if (test_count_sends(&g->acts, GDML_MSG_DELTA, "")) {
            cr_assert_eq(h->step % 3, 0, "a DELTA after step %llu", (unsigned long long)h->step);
            cr_assert_eq(h->deltas, h->step / 3 - 1, "DELTA %llu after step %llu",
                         (unsigned long long)h->deltas + 1, (unsigned long long)h->step);
            h->deltas++;
            h->delta_at = g->now;
            h->pending_global = true;
        }
        const test_action *m = test_find_send(&g->acts, GDML_MSG_MODEL, "r1");
        if (!m) {
            clear(g);
            return;
        }
        cr_assert_eq(m->h.step, h->step, "MODEL of step %llu, expected %llu",
                     (unsigned long long)m->h.step, (unsigned long long)h->step);
        if (h->step % 3 == 0) {
            cr_assert_eq(h->globals, h->step / 3, "MODEL of step %llu before GLOBAL %llu",
                         (unsigned long long)h->step, (unsigned long long)h->step / 3);
            h->model_after_global++;
        }
        clear(g);
        float *g1 = gradient(g->n, 1, (unsigned)h->step),
              *g2 = gradient(g->n, 2, (unsigned)h->step);
        push(g, "w1", "r1", h->step, 32, g1);
        push(g, "w2", "r2", h->step, 16, g2);
        free(g1);
        free(g2);
        h->step++;
    }
}

Test(region_sm, holding_until_budget_allows_delta_never_above_rate)
{
    uint64_t dw = probe_delta_wire();
    /* One delta (and a HELLO) fit a window, two deltas do not. */
    double rate = (double)(2 * dw - 1);
    rig g;
    rig_config(&g);
    g.cfg.up_budget.rate = rate;
    rig_train(&g, SMALL);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_set_budget(g.r, &g.cfg.up_budget, 0, 0, 0, &e), GDML_OK,
                 "a rate of %.0f B/s carries a %llu-byte delta: %s", rate, (unsigned long long)dw,
                 e.text);
    double *want = dup_init(&g), *anchor = dup_init(&g);
    three_steps(&g, 0, want); /* t = 10..30 */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "the first delta fits at once");
    clear(&g);
    float *change = gradient(g.n, 9, 0);
    g.now += 10;
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    for (size_t i = 0; i < g.n; i++)
        want[i] = anchor[i] = anchor[i] + change[i];
    free(change);
    assert_model(&g, GDML_MSG_MODEL, "r1", want, 3, 1);
    clear(&g);
    three_steps(&g, 3, want); /* t = 50..70: the first delta is still in the window */
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0,
                 "a second delta within the second of the first: over the budget");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 4,
                 "only steps 4 and 5: the workers hold at 6");
    cr_assert_eq(g.r->state, REGION_HOLDING);
    clear(&g);
    int64_t due = g.r->hold_until_ms;
    cr_assert_gt(due, g.now);
    cr_assert_leq(due, 30 + 1000, "the first delta leaves the window at 1030, due %lld",
                  (long long)due);
    int64_t wait = gdml_region_next_timer(g.r, g.now);
    cr_assert(wait > 0 && wait <= due - g.now, "next timer in %lld ms, the hold ends in %lld",
              (long long)wait, (long long)(due - g.now));
    for (int64_t t = g.now + 10; t < due; t += 10)
        tick(&g, t);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers wait");
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "waiting for the budget is progress");
    tick(&g, due);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1, "the budget allows it now");
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, NULL), 0, "the workers wait for GLOBAL");
    float *delta = calloc(g.n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 1);
    cr_assert_float_eq(dh.lr_steps, LR * 3, 1e-9);
    double *wd = malloc(g.n * sizeof(double));
    for (size_t i = 0; i < g.n; i++)
        wd[i] = want[i] - anchor[i];
    assert_close(delta, wd, g.n, "DELTA");
    free(delta);
    free(wd);
    free(anchor);
    clear(&g);

    /* Rounds go on: workers push when a model comes, the coordinator answers
     * every delta; nothing upstream may exceed the rate in any 1 s window. */
    hold_run h = {.step = 6, .deltas = 2, .globals = 1, .delta_at = g.now, .pending_global = true};
    h.change = calloc(g.n, sizeof(float));
    for (int64_t t = g.now + 10; t <= 8000; t += 10) {
        g.now = t;
        if (h.pending_global && t >= h.delta_at + 20) {
            coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, ++h.globals, h.change);
            h.pending_global = false;
            hold_handle(&h, &g);
        }
        tick(&g, t);
        hold_handle(&h, &g);
    }
    uint64_t deltas = h.deltas, model_after_global = h.model_after_global;
    free(h.change);
    cr_assert_geq(deltas, 4, "only %llu deltas in 8 s", (unsigned long long)deltas);
    cr_assert_geq(model_after_global, 3);
    /* Every trailing 1 s window, over everything sent upstream. */
    uint64_t limit = (uint64_t)rate;
    for (size_t i = 0; i < g.n_up; i++) {
        uint64_t sum = 0;
        for (size_t j = 0; j <= i; j++)
            if (g.up[j].t > g.up[i].t - 1000)
                sum += g.up[j].wire;
        cr_assert_leq(sum, limit,
                      "%llu bytes upstream in the second up to %lld ms; the rate is %llu",
                      (unsigned long long)sum, (long long)g.up[i].t, (unsigned long long)limit);
    }
    free(want);
    rig_fini(&g);
}

Test(region_sm, set_budget_refuses_budget_no_delta_fits)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    gdml_budget_config tiny = {.rate = 10};
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_region_set_budget(g.r, &tiny, 777, 888, g.now, &e), GDML_ERR_INVALID);
    cr_assert_neq(e.text[0], '\0', "the refusal says why");
    cr_assert(strstr(e.text, "bytes_per_s") != NULL, "'%s' names the key to change", e.text);
    cr_assert_float_eq(gdml_wan_budget(g.r->up).rate, 0.0, 1e-12, "the old budget stays");
    cr_assert_eq(g.cfg.down_rate, 0, "the asked-for downlink stays too");
    cr_assert_eq(g.cfg.down_cap, 0);
    /* And it works as before: the delta goes at once. */
    for (unsigned k = 0; k < 3; k++) {
        float *g1 = gradient(g.n, 1, k), *g2 = gradient(g.n, 2, k);
        g.now += 10;
        push(&g, "w1", "r1", k, 32, g1);
        push(&g, "w2", "r2", k, 16, g2);
        free(g1);
        free(g2);
    }
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 1);
    /* A usable one is taken. */
    gdml_budget_config ok = {.rate = 100000};
    cr_assert_eq(gdml_region_set_budget(g.r, &ok, 777, 888, g.now, &e), GDML_OK, "%s", e.text);
    cr_assert_float_eq(gdml_wan_budget(g.r->up).rate, 100000.0, 1e-9);
    cr_assert_eq(g.cfg.down_rate, 777);
    rig_fini(&g);
}

/* ---- time ---- */

Test(region_sm, timeout_names_the_worker_it_waits_for)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    float *g1 = gradient(g.n, 1, 0);
    g.now = 10;
    push(&g, "w1", "r1", 0, 32, g1);
    for (int64_t t = 500; t <= 10000; t += 500) {
        g.now = t;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
        tick(&g, t);
        cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "exit at %lld ms: %s",
                     (long long)t, exit_action(&g) ? exit_action(&g)->act.text : "");
        clear(&g);
    }
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x, "no progress for timeout_ms: the run ends");
    cr_assert_eq(x->act.status, 3);
    cr_assert_eq(x->act.err, GDML_ERR_TIMEOUT);
    cr_assert(strstr(x->act.text, "'w2'") != NULL, "'%s' names w2", x->act.text);
    cr_assert(strstr(x->act.text, "'w1'") == NULL, "'%s' names w1, which pushed", x->act.text);
    cr_assert(strstr(x->act.text, "step 0") != NULL, "'%s' names the step", x->act.text);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    free(g1);
    rig_fini(&g);
}

Test(region_sm, timeout_while_joining_says_what_is_missing)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    for (int64_t t = 1000; t <= 10000; t += 1000) {
        g.now = t;
        feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
        tick(&g, t);
    }
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 3);
    cr_assert(strstr(x->act.text, "1 of 2 workers") != NULL, "'%s'", x->act.text);
    cr_assert(strstr(x->act.text, "no model from the coordinator") != NULL, "'%s'", x->act.text);
    rig_fini(&g);
}

Test(region_sm, timeout_names_workers_gone_silent)
{
    /* Nobody pushes and both workers fall silent: the region waits for them,
     * and its last word should say so. */
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    for (int64_t t = 500; t <= 10000; t += 500)
        tick(&g, t);
    clear(&g);
    tick(&g, 10001);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 3);
    cr_assert(strstr(x->act.text, "w1") != NULL && strstr(x->act.text, "w2") != NULL,
              "'%s' does not name the workers it waits for", x->act.text);
    rig_fini(&g);
}

Test(region_sm, stop_by_signal_leaves_and_stops_workers)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL);
    g.now = 50;
    gdml_region_on_stop(g.r, g.now, "stopped by a signal");
    drain(&g);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_LEAVE, ""), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_STOP, "r2"), 1);
    const test_action *x = exit_action(&g);
    cr_assert_not_null(x);
    cr_assert_eq(x->act.status, 130);
    cr_assert_eq(x->act.err, GDML_ERR_INTERRUPTED);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 1);
    clear(&g);
    gdml_region_on_stop(g.r, g.now, "again");
    drain(&g);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0, "the run ends once");
    rig_fini(&g);
}

Test(region_sm, heartbeats_on_idle_links)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* everything sent at t = 0 */
    tick(&g, 999);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, NULL), 0);
    tick(&g, 1000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    const test_action *hb = test_find_send(&g.acts, GDML_MSG_HEARTBEAT, "r1");
    cr_assert_str_eq(hb->h.sender, "us-east");
    cr_assert_eq(hb->h.step, 0);
    clear(&g);
    g.now = 1500;
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w1", "r1", 0, 0);
    feed_control(&g, GDML_LINK_DOWN, GDML_MSG_HEARTBEAT, "w2", "r2", 0, 0);
    tick(&g, 1500);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, NULL), 0, "not before 1 s");
    tick(&g, 2000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    clear(&g);
    /* A model sent is as good as a heartbeat on the LAN. */
    float *g1 = gradient(g.n, 1, 0), *g2 = gradient(g.n, 2, 0);
    g.now = 2500;
    push(&g, "w1", "r1", 0, 32, g1);
    push(&g, "w2", "r2", 0, 16, g2);
    clear(&g);
    tick(&g, 3000);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 0);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, ""), 1);
    tick(&g, 3500);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r1"), 1);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_HEARTBEAT, "r2"), 1);
    cr_assert_eq(test_count_kind(&g.acts, GDML_ACT_EXIT), 0);
    free(g1);
    free(g2);
    rig_fini(&g);
}

/* ---- sparse models: pull and push by key ---- */

#define SPARSE "sparselr 600000 2" /* 600001 parameters: three chunks, the bias in the last */

/* A PULL from name naming keys; returns its seq. */
static uint64_t pull(rig *g, const char *name, const char *route, const uint32_t *keys, size_t nk)
{
    gdml_codec *c = NULL;
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_codec_new("keys+none", g->n, 0, &c, &e), GDML_OK, "%s", e.text);
    float *zero = calloc(g->n, sizeof(float));
    cr_assert_not_null(zero);
    gdml_codec_params p = {.keys = keys, .n_keys = nk};
    size_t k;
    cr_assert_eq(gdml_codec_select(c, zero, &p, &k), GDML_OK);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PULL, name);
    h.seq = g->seq++;
    gdml_wan_update u;
    cr_assert_eq(gdml_codec_frames(c, &h, zero, NULL, false, &u, &e), GDML_OK, "%s", e.text);
    for (size_t i = 0; i < u.n_frames; i++)
        feed(g, GDML_LINK_DOWN, u.frames[i], name, route);
    gdml_wan_update_fini(&u);
    gdml_codec_destroy(&c);
    free(zero);
    return h.seq;
}

/* The MODEL sent to route: exactly the entries keys[0..nk) with values want, answering pull seq. */
static void assert_pulled(const rig *g, const char *route, uint64_t seq, const uint32_t *keys,
                          const double *want, size_t nk)
{
    float *got = calloc(g->n, sizeof(float));
    cr_assert_not_null(got);
    size_t frames = 0, entries = 0;
    for (size_t i = 0; i < g->acts.n; i++) {
        const test_action *a = &g->acts.a[i];
        if (a->act.kind != GDML_ACT_SEND || a->h.type != GDML_MSG_MODEL || !sent_to(a, route))
            continue;
        cr_assert_eq(a->h.acked, seq, "MODEL answers pull %llu, not %llu",
                     (unsigned long long)a->h.acked, (unsigned long long)seq);
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_wan_decode_chunk(&a->h, a->payload, got, "the region", &e), GDML_OK, "%s",
                     e.text);
        entries += gdml_codec_payload_k(a->payload, (size_t)a->h.plen);
        frames++;
    }
    cr_assert_gt(frames, 0, "no MODEL to '%s'", route);
    cr_assert_eq(entries, nk, "the MODEL holds %zu entries, the pull named %zu", entries, nk);
    for (size_t j = 0; j < nk; j++)
        cr_assert_float_eq(got[keys[j]], want[j], 1e-6, "key %u: %g, expected %g", keys[j],
                           (double)got[keys[j]], want[j]);
    free(got);
}

Test(region_sm, a_sparse_model_is_pulled_by_key_and_stepped_over_every_sample)
{
    rig g;
    rig_config(&g);
    rig_open(&g);
    hello(&g, "w1", "r1", 600);
    hello(&g, "w2", "r2", 400);
    welcome(&g, SPARSE);
    const test_action *w = test_find_send(&g.acts, GDML_MSG_WELCOME, "r1");
    cr_assert_not_null(w);
    cr_assert_eq(w->h.encoding, GDML_ENC_NONE, "a sparse model's WELCOME carries no tensor");
    cr_assert_str_eq(w->h.text, SPARSE);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0);
    clear(&g);

    /* Each pulls its first batch's keys and gets the (zero) model at them alone. */
    const uint32_t k1[] = {5, 300000, 600000}, k2[] = {5, 7, 600000};
    const double zeros[] = {0, 0, 0};
    uint64_t s1 = pull(&g, "w1", "r1", k1, 3);
    assert_pulled(&g, "r1", s1, k1, zeros, 3);
    uint64_t s2 = pull(&g, "w2", "r2", k2, 3);
    assert_pulled(&g, "r2", s2, k2, zeros, 3);
    clear(&g);

    /* Gradients at their keys; chunk 1 is touched by w1 alone. */
    float *g1 = calloc(g.n, sizeof(float)), *g2 = calloc(g.n, sizeof(float));
    cr_assert(g1 && g2);
    g1[5] = 1, g1[300000] = 2, g1[600000] = 0.5f;
    g2[5] = -1, g2[7] = 3, g2[600000] = 0.5f;
    push(&g, "w1", "r1", 0, 60, g1);
    push(&g, "w2", "r2", 0, 40, g2);
    cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_MODEL, "r1"), 0,
                 "no model before the next pull");

    /* The step's mean is over all 100 samples, in every chunk: key 300000
     * moves by 0.5 x 60 x 2 / 100, not by 0.5 x 2 as a mean over chunk 1's
     * samples alone would have it. */
    const uint32_t next[] = {5, 7, 300000, 600000};
    const double want[] = {-LR * (60 - 40) / 100.0, -LR * 120 / 100.0, -LR * 120 / 100.0,
                           -LR * 50 / 100.0};
    uint64_t s3 = pull(&g, "w1", "r1", next, 4);
    assert_pulled(&g, "r1", s3, next, want, 4);
    const test_action *m = test_find_send(&g.acts, GDML_MSG_MODEL, "r1");
    cr_assert_eq(m->h.step, 1);
    clear(&g);
    free(g1);
    free(g2);
    rig_fini(&g);
}

/* ---- held-out scores: metrics only ---- */

/* A push of step from name whose header carries a held-out score of version. */
static void push_scored(rig *g, const char *name, const char *route, uint64_t step,
                        uint64_t version, gdml_score val, const float *grad)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_PUSH, name);
    h.seq = g->seq++;
    h.step = step;
    h.count = 32;
    h.version = version;
    h.val = val;
    h.val_version = val.rows ? version : 0;
    size_t nf;
    gdml_blob **f = test_tensor_frames(&h, grad, g->n, NULL, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(g, GDML_LINK_DOWN, f[i], name, route);
    test_frames_free(f, nf);
}

/* Three steps of both workers; w1 and w2 send the scores given (of version). */
static void scored_round(rig *g, unsigned round, uint64_t version, const gdml_score *s1,
                         const gdml_score *s2)
{
    for (unsigned k = 0; k < 3; k++) {
        unsigned step = round * 3 + k;
        float *g1 = gradient(g->n, 1, step), *g2 = gradient(g->n, 2, step);
        g->now += 10;
        push_scored(g, "w1", "r1", step, version, s1[k], g1);
        push_scored(g, "w2", "r2", step, version, s2[k], g2);
        free(g1);
        free(g2);
    }
}

Test(region_sm, the_delta_carries_the_sum_of_its_workers_newest_scores)
{
    rig g;
    rig_config(&g);
    rig_train(&g, SMALL); /* w1 declared 600 samples, w2 400 */
    const gdml_score a = {100, 80, 0.5}, b = {50, 20, 2.0}, too_many = {401, 10, 1.0};
    /* w2's second score claims more rows than its HELLO's samples: ignored, its gradient used. */
    scored_round(&g, 0, 0, (gdml_score[]){a, a, a}, (gdml_score[]){b, too_many, b});
    gdml_region_stats s = stats(&g);
    cr_assert_eq(s.rejected[GDML_REASON_BOUNDS], 1);
    cr_assert_eq(s.pushes, 6, "a push with a bad score was not used");
    cr_assert_eq(s.steps, 3);
    cr_assert_null(test_find_send(&g.acts, GDML_MSG_ERROR, "r2"), "a bad metric is not argued");
    float *delta = calloc(g.n, sizeof(float));
    gdml_msg_header dh;
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.val.rows, 150);
    cr_assert_eq(dh.val.correct, 100);
    cr_assert_float_eq(dh.val.loss, (0.5 * 100 + 2.0 * 50) / 150, 1e-12);
    cr_assert_eq(dh.val_version, 0);
    clear(&g);

    /* Version 1: only w1 scores it; w2's score of version 0 is older and not summed. */
    float *change = gradient(g.n, 9, 0);
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 1, change);
    clear(&g);
    const gdml_score c = {100, 90, 0.25}, none = {0};
    scored_round(&g, 1, 1, (gdml_score[]){c, c, c}, (gdml_score[]){none, none, none});
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 1);
    cr_assert_eq(dh.val.rows, 100);
    cr_assert_eq(dh.val.correct, 90);
    cr_assert_float_eq(dh.val.loss, 0.25, 1e-12);
    cr_assert_eq(dh.val_version, 1);
    clear(&g);

    /* Version 2: nobody scored it yet (a delta that goes the moment its version
     * comes): the DELTA carries the newest scores there are, of version 1.
     * w2 claims a score of version 5, which it was never sent: ignored. */
    coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, 2, change);
    clear(&g);
    float *g2 = gradient(g.n, 2, 6);
    push_scored(&g, "w2", "r2", 6, 5, b, g2);
    free(g2);
    cr_assert_eq(stats(&g).rejected[GDML_REASON_BOUNDS], 2);
    cr_assert_eq(stats(&g).pushes, 13, "a push with a score of a future version was not used");
    float *g1 = gradient(g.n, 1, 6);
    push_scored(&g, "w1", "r1", 6, 2, none, g1);
    free(g1);
    for (unsigned k = 1; k < 3; k++) {
        float *a1 = gradient(g.n, 1, 6 + k), *a2 = gradient(g.n, 2, 6 + k);
        push_scored(&g, "w1", "r1", 6 + k, 2, none, a1);
        push_scored(&g, "w2", "r2", 6 + k, 2, none, a2);
        free(a1);
        free(a2);
    }
    cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1);
    cr_assert_eq(dh.version, 2);
    cr_assert_eq(dh.val.rows, 100);
    cr_assert_eq(dh.val_version, 1);
    free(change);
    free(delta);
    rig_fini(&g);
}

/* ---- differential privacy (region_dp.c) ---- */

Test(region_sm, dp_clips_and_noises_each_delta_and_sends_none_past_the_limit)
{
    rig g;
    rig_config(&g);
    /* A clip far below the raw delta's norm, noise small against it, and a
     * limit that allows exactly two deltas. */
    gdml_dp_config dc = {.clip = 0.002, .noise_multiplier = 1e-3, .delta = 1e-5, .seed = 9};
    dc.epsilon_limit = gdml_dp_epsilon(&dc, 2);
    gdml_dp *dp = NULL;
    cr_assert_eq(gdml_dp_new(&dc, "us-east", &dp, NULL), GDML_OK);
    g.cfg.dp = dp;
    rig_train(&g, SMALL);
    double *want = dup_init(&g);
    for (unsigned round = 0; round < 3; round++) {
        for (unsigned k = 0; k < 3; k++)
            step2(&g, want, round * 3 + k);
        if (round == 2) {
            cr_assert_eq(test_count_sends(&g.acts, GDML_MSG_DELTA, ""), 0,
                         "a third delta would pass the limit, and went out");
            const test_action *x = exit_action(&g);
            cr_assert_not_null(x, "the region does not leave at its privacy limit");
            cr_assert_eq(x->act.status, 0);
            cr_assert(strstr(x->act.text, "privacy budget spent"), "%s", x->act.text);
            break;
        }
        float *delta = calloc(g.n, sizeof(float));
        gdml_msg_header dh;
        cr_assert_eq(sent_tensor(&g, GDML_MSG_DELTA, "", delta, &dh), 1, "round %u: no DELTA",
                     round);
        double sq = 0, raw = 0;
        for (size_t i = 0; i < g.n; i++)
            sq += (double)delta[i] * delta[i];
        for (size_t i = 0; i < g.n; i++) {
            double d = want[i] - g.init[i];
            raw += d * d;
        }
        /* norm^2 = clip^2 + the noise's n (z clip)^2, give or take */
        double expect = sqrt(dc.clip * dc.clip + g.n * pow(dc.noise_multiplier * dc.clip, 2));
        cr_assert(round > 0 || sqrt(raw) > 10 * dc.clip,
                  "the raw delta (norm %g) is not above the clip", sqrt(raw));
        cr_assert(fabs(sqrt(sq) - expect) < 0.1 * expect, "round %u: DELTA norm %g, want ~%g",
                  round, sqrt(sq), expect);
        cr_assert(isnan(dh.metric), "the training loss went out under DP: %g", dh.metric);
        cr_assert_eq(dh.val.rows, 0);
        free(delta);
        clear(&g);
        /* GLOBAL of nothing: the model goes back to the anchor. */
        float *zero = calloc(g.n, sizeof(float));
        g.now += 10;
        coord_tensor(&g, GDML_MSG_GLOBAL, NULL, 0, round + 1, zero);
        for (size_t i = 0; i < g.n; i++)
            want[i] = g.init[i];
        free(zero);
        clear(&g);
    }
    free(want);
    rig_fini(&g);
    gdml_dp_destroy(&dp);
}
