/*
 * test_coord_sm.c - table tests of the global coordinator's state machine
 * (server/coord_sm.h): frames made as regions make them, handed in as
 * received and authenticated, ticks of a clock the test advances itself,
 * dropped routes, commit results and stop requests in; the actions it queues
 * (frames, commits, the end of the run) and its counters out. No socket, no
 * clock, no store.
 *
 * The first tests run honest rounds and check what is merged, committed and
 * sent down; the rest feed duplicate, stale, replayed, out-of-order, faulty
 * and hostile input, one case per test. A few tests look inside (coord_impl.h)
 * only to read a member's state.
 */
#include "coord_impl.h"
#include "coord_sm.h"
#include "sm_support.h"
#include "support.h"

#include "chunk.h"
#include "log.h"
#include "model.h"
#include "msg.h"
#include "wan.h"

#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The clock starts here (any monotonic time; see error_replies_rate_limited_at_time_zero). */
#define T0 ((int64_t)1000000)
#define SAMPLES_A 100
#define SAMPLES_B 300

/* ---- the fixture ---- */

typedef struct fx {
    gdml_coord_config cfg;
    char names[3][GDML_NAME_MAX];
    gdml_coord *c;
    test_actions acts;
    int64_t now;
    size_t n;
    float *initial;
} fx;

/* The configuration of the brief: softmax inputs x classes, members a and b, 3 rounds, fedavg. */
static void fx_config(fx *f, uint32_t inputs, uint32_t classes)
{
    gdml_log_init("test_coord_sm", NULL, GDML_LOG_ERROR, GDML_LOG_TEXT);
    memset(f, 0, sizeof *f);
    snprintf(f->cfg.layout.kind, sizeof f->cfg.layout.kind, "softmax");
    f->cfg.layout.inputs = inputs;
    f->cfg.layout.classes = classes;
    f->cfg.model_seed = 7;
    f->cfg.regions = 2;
    snprintf(f->names[0], GDML_NAME_MAX, "a");
    snprintf(f->names[1], GDML_NAME_MAX, "b");
    snprintf(f->names[2], GDML_NAME_MAX, "c"); /* a member only where a test says so */
    f->cfg.members = (const char(*)[GDML_NAME_MAX])f->names;
    f->cfg.n_members = 2;
    f->cfg.rounds = 3;
    f->cfg.timeout_ms = 10000;
    f->cfg.heartbeat_ms = 1000;
    f->cfg.peer_timeout_ms = 3000;
    f->cfg.max_samples = 1000000;
    f->cfg.max_delta_norm = 100;
    f->cfg.max_change_norm = 100;
    f->cfg.merge = (gdml_merge_config){
        .rule = "fedavg", .lr = 1, .momentum = 0.9, .beta1 = 0.9, .beta2 = 0.999, .epsilon = 1e-8};
    f->cfg.encoder = "dense";
    f->cfg.k_fraction = 0.1;
    f->cfg.threshold = 0.01;
    f->cfg.min_message_bytes = 64;
    f->cfg.curve = true;
    f->cfg.byte_log = NULL;
    f->cfg.seq_base = 1000;
    f->now = T0;
}

/* Makes the coordinator of f->cfg and starts its clock at f->now. */
static void fx_start(fx *f)
{
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_coord_new(&f->cfg, &f->c, &e), GDML_OK, "%s", e.text);
    const gdml_model_ops *ops = gdml_model_find(f->cfg.layout.kind);
    cr_assert_not_null(ops);
    f->n = ops->param_count(&f->cfg.layout);
    f->initial = malloc(f->n * sizeof(float));
    cr_assert_not_null(f->initial);
    ops->init(&f->cfg.layout, f->initial, f->cfg.model_seed);
    gdml_coord_start(f->c, f->now);
}

static void fx_fini(fx *f)
{
    test_actions_clear(&f->acts);
    free(f->acts.a);
    f->acts.a = NULL;
    f->acts.cap = 0;
    gdml_coord_destroy(&f->c);
    free(f->initial);
    f->initial = NULL;
}

/* Takes every queued action into f->acts. */
static void drain(fx *f)
{
    gdml_action a;
    while (gdml_coord_next_action(f->c, &a))
        test_actions_add(&f->acts, &a);
}

static void forget(fx *f)
{
    drain(f);
    test_actions_clear(&f->acts);
}

static gdml_coord_stats stats(const fx *f)
{
    gdml_coord_stats s;
    gdml_coord_stats_get(f->c, &s);
    return s;
}

static gdml_member_state member_state(const fx *f, const char *name)
{
    int i = gdml_members_find(&f->c->members, name);
    cr_assert_geq(i, 0, "no slot for '%s'", name);
    return f->c->members.slots[i].state;
}

/* The EXIT action among f->acts, or NULL. */
static const gdml_action *find_exit(const fx *f)
{
    for (size_t i = 0; i < f->acts.n; i++)
        if (f->acts.a[i].act.kind == GDML_ACT_EXIT)
            return &f->acts.a[i].act;
    return NULL;
}

/* ---- events ---- */

/* Hands frame to the coordinator as received from name through route; unrefs it. */
static void feed_own(fx *f, gdml_blob *frame, const char *name, const char *route)
{
    test_rx rx;
    test_rx_from(&rx, frame, name, route);
    gdml_coord_on_frame(f->c, f->now, &rx.rx);
    test_rx_fini(&rx);
    gdml_blob_unref(&frame);
    drain(f);
}

/* As feed_own, keeping the caller's reference. */
static void feed(fx *f, gdml_blob *frame, const char *name, const char *route)
{
    feed_own(f, gdml_blob_ref(frame), name, route);
}

static gdml_blob *hello(const char *name, uint64_t samples, uint64_t down_rate, uint64_t down_cap)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_HELLO, name);
    h.seq = 1;
    h.count = samples;
    h.down_rate = down_rate;
    h.down_cap = down_cap;
    gdml_blob *frame = NULL;
    cr_assert_eq(gdml_frame_header_only(&h, &frame), GDML_OK);
    return frame;
}

static void join(fx *f, const char *name, const char *route, uint64_t samples)
{
    feed_own(f, hello(name, samples, 0, 0), name, route);
}

/* a (route ra, 100 samples) and b (route rb, 300 samples) join. */
static void join_both(fx *f)
{
    join(f, "a", "ra", SAMPLES_A);
    join(f, "b", "rb", SAMPLES_B);
}

static gdml_msg_header delta_header(const char *name, uint64_t seq, uint64_t version,
                                    uint64_t count)
{
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_DELTA, name);
    h.seq = seq;
    h.version = version;
    h.step = 10;
    h.count = count;
    h.metric = 0.5;
    return h;
}

/* The frames of delta d[0..f->n) with header h (dense); *nf of them. */
static gdml_blob **delta_frames(const fx *f, gdml_msg_header h, const float *d, size_t *nf)
{
    return test_tensor_frames(&h, d, f->n, "dense", nf);
}

/* Sends every frame of delta d with header h through route, in order. */
static void send_delta_h(fx *f, gdml_msg_header h, const char *route, const float *d)
{
    size_t nf = 0;
    gdml_blob **frames = delta_frames(f, h, d, &nf);
    for (size_t i = 0; i < nf; i++)
        feed(f, frames[i], h.sender, route);
    test_frames_free(frames, nf);
}

static void send_delta(fx *f, const char *name, const char *route, uint64_t seq, uint64_t version,
                       uint64_t count, const float *d)
{
    send_delta_h(f, delta_header(name, seq, version, count), route, d);
}

/* Advances the clock by ms, ticking every step ms. */
static void advance(fx *f, int64_t ms, int64_t step)
{
    for (int64_t t = 0; t < ms; t += step) {
        f->now += step;
        gdml_coord_on_tick(f->c, f->now);
        drain(f);
    }
}

static void committed(fx *f)
{
    gdml_coord_on_committed(f->c, f->now, GDML_OK, NULL);
    drain(f);
}

/* ---- tensors ---- */

static float *vec(size_t n)
{
    float *v = calloc(n ? n : 1, sizeof(float));
    cr_assert_not_null(v);
    return v;
}

/* A deterministic delta, entries in [-scale, scale], different for each salt. */
static void make_delta(float *d, size_t n, float scale, unsigned salt)
{
    for (size_t i = 0; i < n; i++)
        d[i] = scale * (float)((int)((i * 7 + salt * 13 + i / 5) % 11) - 5) / 5.0f;
}

static double norm2(const float *x, size_t n)
{
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += (double)x[i] * x[i];
    return sqrt(s);
}

/* What fedavg with lr makes of g and deltas d[0..k) with weights w. */
static void fedavg_expect(const float *g, const float *const *d, const double *w, size_t k,
                          size_t n, double lr, float *out)
{
    double total = 0;
    for (size_t i = 0; i < k; i++)
        total += w[i];
    for (size_t j = 0; j < n; j++) {
        double acc = 0;
        for (size_t i = 0; i < k; i++)
            acc += w[i] * (double)d[i][j];
        out[j] = (float)(g[j] + lr * (acc / total));
    }
}

static void expect_close(const float *got, const float *want, size_t n, const char *what)
{
    size_t bad = 0, first = 0;
    for (size_t j = 0; j < n; j++)
        if (!(fabsf(got[j] - want[j]) <= 1e-6f * (1.0f + fabsf(want[j])))) {
            if (!bad)
                first = j;
            bad++;
        }
    cr_expect_eq(bad, 0, "%s: %zu of %zu entries differ, first at %zu: %.9g, expected %.9g", what,
                 bad, n, first, bad ? got[first] : 0.0, bad ? want[first] : 0.0);
}

/* The version a COMMIT asks for: its metadata and its params (and merge_state). */
static const gdml_version_meta *pending(fx *f, const float **params, const float **state,
                                        size_t *n_state)
{
    const char *layout = NULL;
    const gdml_store_tensor *t = NULL;
    size_t nt = 0;
    const gdml_version_meta *m = gdml_coord_pending(f->c, &layout, &t, &nt);
    cr_assert_geq(nt, 1);
    cr_assert_str_eq(t[0].name, "params");
    cr_assert_eq(t[0].n, f->n);
    *params = t[0].data;
    if (state) {
        *state = NULL;
        *n_state = 0;
        if (nt > 1) {
            cr_assert_str_eq(t[1].name, "merge_state");
            *state = t[1].data;
            *n_state = t[1].n;
        }
    }
    return m;
}

static const gdml_region_part *part(const gdml_version_meta *m, const char *name)
{
    return gdml_test_region_part(m, name);
}

/* Decodes every SEND of type to route among f->acts into out[0..n) (one transfer); frames. */
static size_t decode_sent(const fx *f, gdml_msg_type type, const char *route, float *out)
{
    memset(out, 0, f->n * sizeof(float));
    gdml_peer p = test_route(route);
    size_t frames = 0;
    for (size_t i = 0; i < f->acts.n; i++) {
        const test_action *a = &f->acts.a[i];
        if (a->act.kind != GDML_ACT_SEND || a->h.type != type || !gdml_peer_eq(&a->act.peer, &p))
            continue;
        gdml_errmsg e = {{0}};
        cr_assert_eq(gdml_wan_decode_chunk(&a->h, a->payload, out, "coordinator", &e), GDML_OK,
                     "%s", e.text);
        frames++;
    }
    return frames;
}

/* ---- honest runs ---- */

/* Three honest rounds: WELCOME, deltas, one COMMIT each, GLOBAL carrying the change, STOP, EXIT. */
static void honest_run(bool curve)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.curve = curve;
    fx_start(&f);
    cr_assert_eq(f.n, 15);
    join_both(&f);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "rb"), 1);
    const test_action *w = test_find_send(&f.acts, GDML_MSG_WELCOME, "ra");
    cr_expect_eq(w->h.version, 0);
    cr_expect_str_eq(w->h.text, "softmax 4 3");
    cr_expect_eq(w->h.count, f.cfg.model_seed);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.joins, 2);
    cr_expect_eq(s.rejoins, 0);

    /* What each region holds: the initial model plus what it was sent. */
    float *held_a = vec(f.n), *held_b = vec(f.n), *got = vec(f.n), *want = vec(f.n);
    float *prev = vec(f.n), *da = vec(f.n), *db = vec(f.n);
    decode_sent(&f, GDML_MSG_WELCOME, "ra", got);
    for (size_t j = 0; j < f.n; j++) {
        cr_expect_eq(got[j], 0.0f, "WELCOME at version 0 carries nothing");
        held_a[j] = f.initial[j] + got[j];
        held_b[j] = f.initial[j];
    }
    memcpy(prev, f.initial, f.n * sizeof(float));
    forget(&f);

    for (uint64_t r = 1; r <= 3; r++) {
        make_delta(da, f.n, 0.1f, (unsigned)r);
        make_delta(db, f.n, 0.05f, (unsigned)(r + 10));
        gdml_msg_header ha = delta_header("a", r, r - 1, SAMPLES_A);
        ha.lr_steps = 0.5;
        gdml_msg_header hb = delta_header("b", r, r - 1, SAMPLES_B);
        hb.lr_steps = 1.5;
        send_delta_h(&f, ha, "ra", da);
        cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "one delta is not a round");
        send_delta_h(&f, hb, "rb", db);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "round %llu",
                     (unsigned long long)r);
        cr_expect_eq(f.acts.n, 1, "only the COMMIT is asked for before it is committed");

        const float *params = NULL;
        const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
        cr_expect_eq(m->version, r);
        cr_expect_eq(m->parent, r - 1);
        cr_expect_eq(m->round, r);
        cr_expect_str_eq(m->rule, "fedavg");
        cr_expect_eq(m->n_regions, 2);
        cr_expect_eq(part(m, "a")->seq, r);
        cr_expect_eq(part(m, "a")->samples, SAMPLES_A);
        cr_expect_eq(part(m, "b")->seq, r);
        cr_expect_eq(part(m, "b")->samples, SAMPLES_B);
        cr_expect_float_eq(m->lr_steps, (0.5 * SAMPLES_A + 1.5 * SAMPLES_B) / 400.0, 1e-12);
        const float *ds[2] = {da, db};
        double ws[2] = {SAMPLES_A, SAMPLES_B};
        fedavg_expect(prev, ds, ws, 2, f.n, 1.0, want);
        expect_close(params, want, f.n, "params = previous + weighted average of the deltas");
        float *committed_params = vec(f.n);
        memcpy(committed_params, params, f.n * sizeof(float));
        forget(&f);

        committed(&f);
        s = stats(&f);
        cr_expect_eq(s.version, r);
        cr_expect_eq(s.merges, r);
        if (r < 3) {
            cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 1);
            cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 1);
            const test_action *g = test_find_send(&f.acts, GDML_MSG_GLOBAL, "rb");
            cr_expect_eq(g->h.version, r);
            cr_expect_float_eq(g->h.lr_steps, m->lr_steps, 1e-12, "fedavg lr 1: GLOBAL's lrh");
            cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 0);
            cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, NULL), 0);
            for (int k = 0; k < 2; k++) {
                float *held = k ? held_b : held_a;
                decode_sent(&f, GDML_MSG_GLOBAL, k ? "rb" : "ra", got);
                for (size_t j = 0; j < f.n; j++) {
                    float change = committed_params[j] - prev[j];
                    cr_expect(fabsf(got[j] - change) <= 1e-5f, "GLOBAL %d[%zu] %g, change %g", k, j,
                              got[j], change);
                    held[j] += got[j];
                }
                expect_close(held, committed_params, f.n, "what a region holds after GLOBAL");
            }
        } else {
            cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, NULL), 0);
            cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1);
            cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "rb"), 1);
            cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 1);
            const gdml_action *x = find_exit(&f);
            cr_expect_eq(x->status, 0);
            cr_expect_eq(x->err, GDML_OK);
        }
        memcpy(prev, committed_params, f.n * sizeof(float));
        free(committed_params);
        forget(&f);
    }
    /* The run is over: nothing more happens. */
    advance(&f, 10000, 500);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 0, "exactly one EXIT");
    free(held_a);
    free(held_b);
    free(got);
    free(want);
    free(prev);
    free(da);
    free(db);
    fx_fini(&f);
}

Test(coord_sm, honest_three_rounds_curve)
{
    honest_run(true);
}

Test(coord_sm, honest_three_rounds_plain)
{
    honest_run(false);
}

/* A delta of more than one chunk, its chunks out of order and one twice: merged once, right. */
Test(coord_sm, multi_chunk_delta_out_of_order_and_duplicated)
{
    fx f;
    fx_config(&f, 300000, 2);
    fx_start(&f);
    cr_assert_eq(f.n, 600002);
    cr_assert_eq(gdml_chunk_count(f.n), 3);
    join_both(&f);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 3, "WELCOME in 3 chunks");
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n), *got = vec(f.n);
    make_delta(da, f.n, 0.01f, 1);
    make_delta(db, f.n, 0.02f, 2);
    size_t na = 0, nb = 0;
    gdml_blob **fa = delta_frames(&f, delta_header("a", 1, 0, SAMPLES_A), da, &na);
    gdml_blob **fb = delta_frames(&f, delta_header("b", 1, 0, SAMPLES_B), db, &nb);
    cr_assert_eq(na, 3);
    cr_assert_eq(nb, 3);

    feed(&f, fa[1], "a", "ra");
    feed(&f, fa[1], "a", "ra"); /* the same chunk again */
    feed(&f, fa[2], "a", "ra");
    for (size_t i = 0; i < nb; i++)
        feed(&f, fb[i], "b", "rb");
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "a's delta lacks its chunk 0");
    cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], 1);
    feed(&f, fa[0], "a", "ra");
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);

    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(m->version, 1);
    cr_expect_eq(part(m, "a")->samples, SAMPLES_A);
    const float *ds[2] = {da, db};
    double ws[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(f.initial, ds, ws, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "multi-chunk merge");
    forget(&f);
    committed(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 3);
    cr_expect_eq(decode_sent(&f, GDML_MSG_GLOBAL, "ra", got), 3);
    for (size_t j = 0; j < f.n; j++)
        got[j] += f.initial[j];
    expect_close(got, want, f.n, "initial + GLOBAL = version 1");
    forget(&f);

    /* A replay of the merged transfer, chunk by chunk: ignored. */
    for (size_t i = 0; i < na; i++)
        feed(&f, fa[i], "a", "ra");
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    cr_expect_eq(stats(&f).merges, 1);
    test_frames_free(fa, na);
    test_frames_free(fb, nb);
    free(da);
    free(db);
    free(want);
    free(got);
    fx_fini(&f);
}

/* ---- HELLO ---- */

Test(coord_sm, hello_from_intruder_refused_and_takes_no_slot)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join(&f, "intruder", "rx", SAMPLES_A);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.rejected[GDML_REASON_NOT_ALLOWED], 1);
    cr_expect_eq(s.joins, 0);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, NULL), 0);
    const test_action *err = test_find_send(&f.acts, GDML_MSG_ERROR, "rx");
    cr_assert_not_null(err, "the intruder is told");
    cr_expect_eq(err->h.code, GDML_REASON_NOT_ALLOWED);
    cr_expect_eq(gdml_coord_region_count(f.c), 0, "no slot taken");
    forget(&f);
    join_both(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "rb"), 1);
    cr_expect_eq(stats(&f).joins, 2);
    cr_expect_eq(gdml_coord_region_count(f.c), 2);
    fx_fini(&f);
}

/*
 * No member list, regions = 2: x and y (valid names, joined first) must not
 * keep a and b out; without a list there are up to GDML_STORE_MAX_REGIONS
 * slots. The squatters are then regions like any other: the round waits for
 * them until they are silent past peer_timeout_ms, and goes on without them.
 */
Test(coord_sm, squatters_without_member_list_do_not_lock_out_regions)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.members = NULL;
    f.cfg.n_members = 0;
    fx_start(&f);
    join(&f, "x", "rx", SAMPLES_A);
    join(&f, "y", "ry", SAMPLES_A);
    forget(&f);
    join_both(&f);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.rejected[GDML_REASON_NOT_ALLOWED], 0, "a and b refused: slots = regions");
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "rb"), 1);
    cr_assert_eq(s.joins, 4);
    forget(&f);
    /* a and b deliver and keep talking; x and y fall silent and are not waited for. */
    float *da = vec(f.n), *db = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "x and y are joined and heard");
    for (int i = 0; i < 35 && !test_count_kind(&f.acts, GDML_ACT_COMMIT); i++) {
        advance(&f, 100, 100);
        if (i % 10 == 0) {
            feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "a", 2, 0, 0, 0), "a", "ra");
            feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "b", 2, 0, 0, 0), "b", "rb");
        }
    }
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, SAMPLES_A);
    cr_expect_eq(part(m, "b")->samples, SAMPLES_B);
    cr_expect_eq(part(m, "x")->samples, 0);
    free(da);
    free(db);
    fx_fini(&f);
}

/* HELLO with bad fields: no join, told why. */
Test(coord_sm, hello_with_bad_fields_refused)
{
    static const struct {
        uint64_t count;
        const char *layout;
        gdml_reason reason;
    } cases[] = {
        {0, "", GDML_REASON_BOUNDS},
        {1000001, "", GDML_REASON_BOUNDS},
        {(uint64_t)1 << 40, "", GDML_REASON_BOUNDS},
        {100, "softmax 5 3", GDML_REASON_LAYOUT},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        fx f;
        fx_config(&f, 4, 3);
        fx_start(&f);
        gdml_msg_header h;
        gdml_msg_header_init(&h, GDML_MSG_HELLO, "a");
        h.seq = 1;
        h.count = cases[k].count;
        snprintf(h.text, sizeof h.text, "%s", cases[k].layout);
        gdml_blob *frame = NULL;
        cr_assert_eq(gdml_frame_header_only(&h, &frame), GDML_OK);
        feed_own(&f, frame, "a", "ra");
        gdml_coord_stats s = stats(&f);
        cr_expect_eq(s.rejected[cases[k].reason], 1, "case %zu", k);
        cr_expect_eq(s.joins, 0, "case %zu", k);
        cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, NULL), 0, "case %zu", k);
        const test_action *e = test_find_send(&f.acts, GDML_MSG_ERROR, "ra");
        cr_expect(e && e->h.code == cases[k].reason, "case %zu: told why", k);
        forget(&f);
        join_both(&f);
        cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1, "case %zu", k);
        fx_fini(&f);
    }
}

/* HELLO again after its WELCOME went: a rejoin, not a join; the delta in stays. */
Test(coord_sm, repeated_hello_keeps_the_delta_received)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    join(&f, "a", "ra", SAMPLES_A);
    join(&f, "a", "ra", SAMPLES_A);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.joins, 2, "no duplicate join");
    cr_expect_eq(s.rejoins, 2);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "the commit holds both");
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, SAMPLES_A);
    cr_expect_eq(part(m, "b")->samples, SAMPLES_B);
    const float *ds[2] = {da, db};
    double ws[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(f.initial, ds, ws, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "both deltas merged");
    free(da);
    free(db);
    free(want);
    fx_fini(&f);
}

/* The smallest HELLO budget (down_rate, or down_cap) the coordinator accepts for a. */
static bool budget_accepted(bool rate, uint64_t v)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    feed_own(&f, hello("a", SAMPLES_A, rate ? v : 0, rate ? 0 : v), "a", "ra");
    bool ok = stats(&f).rejected[GDML_REASON_BUDGET] == 0;
    fx_fini(&f);
    return ok;
}

static uint64_t smallest_budget(bool rate)
{
    uint64_t lo = 1, hi = 1 << 20;
    cr_assert(budget_accepted(rate, hi));
    cr_assert(!budget_accepted(rate, lo));
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (budget_accepted(rate, mid))
            hi = mid;
        else
            lo = mid + 1;
    }
    return lo;
}

/* HELLO again while its WELCOME waits for budget: counted a duplicate, changes nothing. */
Test(coord_sm, repeated_hello_while_welcome_pending)
{
    uint64_t rate = smallest_budget(true);
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra");
    join(&f, "b", "rb", SAMPLES_B);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1, "the first fits");
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    gdml_msg_header ha = delta_header("a", 1, 0, SAMPLES_A);
    ha.down_rate = rate; /* a region's DELTA carries its budget, as its HELLO did */
    send_delta_h(&f, ha, "ra", da);

    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra"); /* its WELCOME must wait */
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 0, "no budget for it yet");
    int64_t wait = gdml_coord_next_timer(f.c, f.now);
    cr_expect(wait > 0 && wait <= 1000, "next timer %lld", (long long)wait);
    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra"); /* and again, while it waits */
    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra");
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.joins, 2);
    cr_expect_eq(s.rejoins, 1, "the repeats while WELCOME waits are not rejoins");
    cr_expect_eq(s.rejected[GDML_REASON_DUPLICATE], 2);
    advance(&f, 1100, 100);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1, "the one WELCOME goes");
    forget(&f);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, SAMPLES_A, "a's delta was kept");
    free(da);
    free(db);
    fx_fini(&f);
}

/*
 * A WELCOME that waits for budget when a version is committed: the region
 * asked to join afresh and has not been sent the whole model yet, so it must
 * still get a WELCOME (of the new version), not a GLOBAL, which a region that
 * waits for WELCOME refuses (region_wan.c on_global: "GLOBAL before WELCOME")
 * or adds to a model it no longer holds.
 */
Test(coord_sm, welcome_pending_across_a_commit_stays_welcome)
{
    uint64_t rate = smallest_budget(true);
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra");
    join(&f, "b", "rb", SAMPLES_B);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *got = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    gdml_msg_header ha = delta_header("a", 1, 0, SAMPLES_A);
    ha.down_rate = rate;
    send_delta_h(&f, ha, "ra", da);
    feed_own(&f, hello("a", SAMPLES_A, rate, 0), "a", "ra"); /* WELCOME waits */
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    pending(&f, &params, NULL, NULL);
    float *v1 = vec(f.n);
    memcpy(v1, params, f.n * sizeof(float));
    forget(&f);
    committed(&f);
    advance(&f, 1100, 100);
    size_t welcomes = test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra");
    size_t globals = test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra");
    cr_expect_eq(welcomes, 1, "a still gets the WELCOME it asked for");
    cr_expect_eq(globals, 0, "not a GLOBAL in its place");
    if (welcomes == 1) {
        const test_action *w = test_find_send(&f.acts, GDML_MSG_WELCOME, "ra");
        cr_expect_eq(w->h.version, 1);
        decode_sent(&f, GDML_MSG_WELCOME, "ra", got);
        for (size_t j = 0; j < f.n; j++)
            got[j] += f.initial[j];
        expect_close(got, v1, f.n, "initial + WELCOME = version 1");
    }
    free(da);
    free(db);
    free(got);
    free(v1);
    fx_fini(&f);
}

/* HELLO every 300 ms and no delta: the progress timeout still fires, naming who is waited for. */
Test(coord_sm, repeated_hello_does_not_reset_the_timeout)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    int64_t start = f.now, ended = 0;
    while (f.now < start + 12000 && !ended) {
        advance(&f, 100, 100);
        if ((f.now - start) % 300 == 0) {
            join(&f, "a", "ra", SAMPLES_A);
            join(&f, "b", "rb", SAMPLES_B);
        }
        if (find_exit(&f))
            ended = f.now;
        else
            test_actions_clear(&f.acts);
    }
    cr_assert(ended, "no EXIT in 12 s");
    cr_expect(ended > start + 10000 && ended <= start + 10100, "EXIT at +%lld ms",
              (long long)(ended - start));
    const gdml_action *x = find_exit(&f);
    cr_expect_eq(x->status, 3);
    cr_expect_eq(x->err, GDML_ERR_TIMEOUT);
    cr_expect(strstr(x->text, "'a'") && strstr(x->text, "'b'"), "names who: %s", x->text);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "rb"), 1);
    cr_expect_eq(stats(&f).joins, 2);
    cr_expect_geq(stats(&f).rejoins, 60);
    fx_fini(&f);
}

/* HELLOs every 300 ms between the deltas: every round commits as soon as it is whole. */
Test(coord_sm, repeated_hello_never_stalls_a_round)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    int64_t start = f.now;
    uint64_t version = 0;
    bool exited = false;
    for (int step = 1; step <= 300 && !exited; step++) {
        advance(&f, 100, 100);
        int64_t t = f.now - start;
        if (t % 300 == 0) {
            join(&f, "a", "ra", SAMPLES_A);
            join(&f, "b", "rb", SAMPLES_B);
        }
        if (t % 1000 == 400) { /* a's delta */
            make_delta(d, f.n, 0.1f, (unsigned)version);
            send_delta(&f, "a", "ra", version + 1, version, SAMPLES_A, d);
            cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
        }
        if (t % 1000 == 800) { /* b's: the round is whole */
            make_delta(d, f.n, 0.1f, (unsigned)version + 5);
            send_delta(&f, "b", "rb", version + 1, version, SAMPLES_B, d);
            cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "round %llu at +%lld ms",
                         (unsigned long long)version + 1, (long long)t);
            version++;
            forget(&f);
            committed(&f);
        }
        exited = find_exit(&f) != NULL;
        if (exited)
            cr_expect_eq(find_exit(&f)->status, 0);
        test_actions_clear(&f.acts);
    }
    cr_expect(exited, "the run did not end");
    cr_expect_eq(version, 3);
    free(d);
    fx_fini(&f);
}

/* ---- DELTA ---- */

Test(coord_sm, delta_before_hello_is_not_member)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 1);
    const test_action *e = test_find_send(&f.acts, GDML_MSG_ERROR, "ra");
    cr_assert_not_null(e);
    cr_expect_eq(e->h.code, GDML_REASON_NOT_MEMBER);
    forget(&f);
    join_both(&f);
    forget(&f);
    /* It was not kept: after joining, the same seq is a new delta and b's alone is not a round. */
    make_delta(d, f.n, 0.1f, 2);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    fx_fini(&f);
}

/* Only HELLO moves a region to another route. */
Test(coord_sm, delta_on_another_route_is_not_member)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    send_delta(&f, "a", "ra2", 1, 0, SAMPLES_A, da);
    feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "a", 1, 0, 0, 0), "a", "ra2");
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 2);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_ERROR, "ra2"), 1, "told once");
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_ERROR, "ra"), 0);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "a's delta was not taken");
    /* a joins again through ra2: now ra is the stale one. */
    join(&f, "a", "ra2", SAMPLES_A);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra2"), 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 3);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    send_delta(&f, "a", "ra2", 1, 0, SAMPLES_A, da);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(da);
    free(db);
    fx_fini(&f);
}

/* count 0, or above the HELLO's samples: BOUNDS, the region is excused, a re-send ignored. */
Test(coord_sm, delta_count_out_of_bounds_excuses_the_region)
{
    static const uint64_t counts[] = {0, SAMPLES_A + 1, (uint64_t)1 << 40};
    for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
        fx f;
        fx_config(&f, 4, 3);
        fx_start(&f);
        join_both(&f);
        forget(&f);
        float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n);
        make_delta(da, f.n, 0.1f, 1);
        make_delta(db, f.n, 0.1f, 2);
        send_delta(&f, "a", "ra", 5, 0, counts[k], da);
        gdml_coord_stats s = stats(&f);
        cr_expect_eq(s.rejected[GDML_REASON_BOUNDS], 1, "count %llu",
                     (unsigned long long)counts[k]);
        cr_expect_eq(s.contributions_dropped, 1);
        const test_action *e = test_find_send(&f.acts, GDML_MSG_ERROR, "ra");
        cr_expect(e && e->h.code == GDML_REASON_BOUNDS, "told");
        send_delta(&f, "a", "ra", 5, 0, SAMPLES_A, da); /* the same seq, now in bounds */
        cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], 1, "a re-send is ignored");
        cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
        send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "the round goes on without a");
        const float *params = NULL;
        const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
        cr_expect_eq(part(m, "a")->samples, 0);
        cr_expect_eq(part(m, "a")->seq, 5);
        cr_expect_eq(part(m, "b")->samples, SAMPLES_B);
        const float *ds[1] = {db};
        double ws[1] = {SAMPLES_B};
        fedavg_expect(f.initial, ds, ws, 1, f.n, 1.0, want);
        expect_close(params, want, f.n, "b's delta alone");
        /* Next round a is waited for again. */
        forget(&f);
        committed(&f);
        forget(&f);
        send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, db);
        cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
        send_delta(&f, "a", "ra", 6, 1, SAMPLES_A, da);
        cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
        free(da);
        free(db);
        free(want);
        fx_fini(&f);
    }
}

/* A delta of a tensor of another size: TENSOR, excused. */
Test(coord_sm, delta_of_another_shape_excuses_the_region)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float wrong[16] = {0}, *db = vec(f.n);
    make_delta(db, f.n, 0.1f, 2);
    gdml_msg_header h = delta_header("a", 1, 0, SAMPLES_A);
    size_t nf = 0;
    gdml_blob **frames = test_tensor_frames(&h, wrong, 16, "dense", &nf);
    for (size_t i = 0; i < nf; i++)
        feed(&f, frames[i], "a", "ra");
    test_frames_free(frames, nf);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_TENSOR], 1);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(db);
    fx_fini(&f);
}

/* Finite but huge (FLT_MAX): NORM, not merged; the version is b's contribution alone. */
Test(coord_sm, delta_of_flt_max_dropped_by_norm)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n);
    for (size_t j = 0; j < f.n; j++)
        da[j] = j % 2 ? FLT_MAX : -FLT_MAX;
    make_delta(db, f.n, 0.1f, 2);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.rejected[GDML_REASON_NORM], 1);
    cr_expect_eq(s.contributions_dropped, 1);
    const test_action *e = test_find_send(&f.acts, GDML_MSG_ERROR, "ra");
    cr_expect(e && e->h.code == GDML_REASON_NORM);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    for (size_t j = 0; j < f.n; j++)
        cr_assert(isfinite(params[j]), "params[%zu] = %g", j, params[j]);
    const float *ds[1] = {db};
    double ws[1] = {SAMPLES_B};
    fedavg_expect(f.initial, ds, ws, 1, f.n, 1.0, want);
    expect_close(params, want, f.n, "b's contribution alone");
    cr_expect_eq(part(m, "a")->samples, 0);
    free(da);
    free(db);
    free(want);
    fx_fini(&f);
}

/* Writes x big-endian as msgpack writes a float64. */
static void be64(double x, uint8_t out[8])
{
    uint64_t u;
    memcpy(&u, &x, 8);
    for (int i = 0; i < 8; i++)
        out[i] = (uint8_t)(u >> (56 - 8 * i));
}

/* lrh beyond its bound never reaches the state machine: encode refuses it, decode too. */
Test(coord_sm, lrh_beyond_bound_refused_by_the_codec)
{
    gdml_msg_header h = delta_header("a", 1, 0, SAMPLES_A);
    h.metric = NAN; /* lrh is then the one float64 in the header */
    uint8_t buf[GDML_MSG_HEADER_MAX];
    size_t len = 0;
    h.lr_steps = 1e308;
    cr_expect_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_ERR_INVALID);
    h.lr_steps = GDML_MSG_MAX_LR_STEPS;
    cr_expect_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);

    /* A hostile peer writes the header itself: patch lrh 0.5 into other values. */
    static const struct {
        double lrh;
        bool ok;
    } cases[] = {{1e308, false},       {INFINITY, false}, {NAN, false}, {-1.0, false},
                 {1.000001e12, false}, {1e12, true},      {0.25, true}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        h.lr_steps = 0.5;
        cr_assert_eq(gdml_msg_encode(&h, buf, sizeof buf, &len), GDML_OK);
        uint8_t half[9] = {0xcb};
        be64(0.5, half + 1);
        size_t at = len;
        for (size_t i = 0; i + 9 <= len; i++)
            if (memcmp(buf + i, half, 9) == 0)
                at = i;
        cr_assert_lt(at, len, "lrh not found in the encoded header");
        be64(cases[k].lrh, buf + at + 1);
        gdml_msg_header out;
        const uint8_t *payload = NULL;
        gdml_errmsg e = {{0}};
        gdml_err err = gdml_msg_decode(buf, len, &out, &payload, NULL, &e);
        if (cases[k].ok) {
            cr_expect_eq(err, GDML_OK, "lrh %g: %s", cases[k].lrh, e.text);
            cr_expect_eq(out.lr_steps, cases[k].lrh);
        } else {
            cr_expect_eq(err, GDML_ERR_PROTO, "lrh %g must be refused", cases[k].lrh);
        }
    }
}

/* lrh at its bound from every region: accepted; GLOBAL's lr_steps finite and in bounds. */
static void lrh_at_bound(double server_lr, double lrh_a, double lrh_b)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.merge.lr = server_lr;
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n);
    make_delta(da, f.n, 0.01f, 1);
    make_delta(db, f.n, 0.01f, 2);
    gdml_msg_header ha = delta_header("a", 1, 0, SAMPLES_A);
    ha.lr_steps = lrh_a;
    gdml_msg_header hb = delta_header("b", 1, 0, SAMPLES_B);
    hb.lr_steps = lrh_b;
    send_delta_h(&f, ha, "ra", da);
    send_delta_h(&f, hb, "rb", db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect(isfinite(m->lr_steps) && m->lr_steps <= GDML_MSG_MAX_LR_STEPS, "meta lrh %g",
              m->lr_steps);
    forget(&f);
    committed(&f);
    advance(&f, 3000, 100); /* time for any retry */
    cr_expect_geq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 1, "GLOBAL to a");
    cr_expect_geq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 1, "GLOBAL to b");
    const test_action *g = test_find_send(&f.acts, GDML_MSG_GLOBAL, "ra");
    if (g)
        cr_expect(isfinite(g->h.lr_steps) && g->h.lr_steps <= GDML_MSG_MAX_LR_STEPS,
                  "GLOBAL lrh %g", g->h.lr_steps);
    free(da);
    free(db);
    fx_fini(&f);
}

Test(coord_sm, lrh_at_bound_accepted)
{
    lrh_at_bound(1.0, GDML_MSG_MAX_LR_STEPS, GDML_MSG_MAX_LR_STEPS);
}

/*
 * The same with server lr 2 and one region (b, most of the samples) at the
 * bound: GLOBAL's lr_steps = lr * mean lrh would be above the bound, and a
 * GLOBAL that cannot be encoded must not leave every region without it.
 */
Test(coord_sm, lrh_at_bound_with_server_lr_2_still_sends_global)
{
    lrh_at_bound(2.0, 0.5, GDML_MSG_MAX_LR_STEPS);
}

/* ---- merges that may not be committed ---- */

/* sum of a (norm ~80) and b (~30) in one direction moves the model 110 > 100: a is dropped. */
Test(coord_sm, merge_above_max_change_drops_the_largest)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.merge.rule = "sum";
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n);
    for (size_t j = 0; j < f.n; j++) {
        da[j] = 80.0f / sqrtf((float)f.n);
        db[j] = 30.0f / sqrtf((float)f.n);
    }
    cr_assert_lt(norm2(da, f.n), f.cfg.max_delta_norm);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "the rest is committed");
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.contributions_dropped, 1);
    cr_expect_eq(s.rejected[GDML_REASON_NORM], 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, 0);
    cr_expect_eq(part(m, "a")->seq, 1, "its seq is recorded: a re-send is ignored");
    cr_expect_eq(part(m, "b")->samples, SAMPLES_B);
    for (size_t j = 0; j < f.n; j++)
        want[j] = (float)(f.initial[j] + 1.0 * db[j]);
    expect_close(params, want, f.n, "b's delta alone");
    forget(&f);
    committed(&f);
    forget(&f);
    send_delta(&f, "a", "ra", 1, 1, SAMPLES_A, da);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], 1);
    free(da);
    free(db);
    free(want);
    fx_fini(&f);
}

/* Every delta dropped: no version; each region is sent the current one and tries anew. */
Test(coord_sm, merge_with_every_delta_dropped_makes_no_version)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.max_change_norm = 0.05;
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *got = vec(f.n);
    make_delta(da, f.n, 0.2f, 1);
    make_delta(db, f.n, 0.2f, 2);
    cr_assert_gt(norm2(db, f.n), 0.05);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.contributions_dropped, 2);
    cr_expect_eq(s.version, 0);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 1);
    const test_action *g = test_find_send(&f.acts, GDML_MSG_GLOBAL, "ra");
    if (g)
        cr_expect_eq(g->h.version, 0);
    decode_sent(&f, GDML_MSG_GLOBAL, "ra", got);
    cr_expect_eq(norm2(got, f.n), 0.0, "nothing changed");
    forget(&f);
    /* The next deltas, small enough, commit. */
    make_delta(da, f.n, 0.001f, 3);
    make_delta(db, f.n, 0.001f, 4);
    send_delta(&f, "a", "ra", 2, 0, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 2, 0, SAMPLES_B, db);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], 0,
                 "the new deltas were refused as a second delta of the round");
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(da);
    free(db);
    free(got);
    fx_fini(&f);
}

/* ---- duplicates, stale and replayed deltas ---- */

Test(coord_sm, duplicate_delta_in_a_round_merged_once)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *other = vec(f.n), *want = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    make_delta(other, f.n, 0.1f, 3);
    size_t nf = 0;
    gdml_blob **fa = delta_frames(&f, delta_header("a", 1, 0, SAMPLES_A), da, &nf);
    cr_assert_eq(nf, 1);
    feed(&f, fa[0], "a", "ra");
    feed(&f, fa[0], "a", "ra");
    send_delta(&f, "a", "ra", 2, 0, SAMPLES_A, other); /* a second delta in the same round */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], 2);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    pending(&f, &params, NULL, NULL);
    const float *ds[2] = {da, db};
    double ws[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(f.initial, ds, ws, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "a's first delta, once");
    test_frames_free(fa, nf);
    free(da);
    free(db);
    free(other);
    free(want);
    fx_fini(&f);
}

/* A delta against an old version: STALE, and the region is sent GLOBAL again. */
Test(coord_sm, stale_delta_gets_global_again)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n), *got = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    forget(&f);
    /* While version 1 is being committed, a's next delta against version 0 is stale. */
    send_delta(&f, "a", "ra", 2, 0, SAMPLES_A, d);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 1);
    committed(&f);
    forget(&f);

    send_delta(&f, "a", "ra", 3, 7, SAMPLES_A, d); /* ahead: stale, nothing to send */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 2);
    advance(&f, 100, 100);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 0);
    forget(&f);
    send_delta(&f, "a", "ra", 4, 0, SAMPLES_A, d); /* behind: it missed version 1 */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 3);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    advance(&f, 100, 100);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 1, "GLOBAL again");
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 0);
    cr_expect_eq(test_find_send(&f.acts, GDML_MSG_GLOBAL, "ra")->h.version, 1);
    /* What it lacks by the coordinator's view: nothing (it was sent version 1 already). */
    decode_sent(&f, GDML_MSG_GLOBAL, "ra", got);
    cr_expect_eq(norm2(got, f.n), 0.0);
    forget(&f);
    /* Its delta against version 1 is then taken. */
    send_delta(&f, "a", "ra", 5, 1, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    free(got);
    fx_fini(&f);
}

/* ---- quorum, async and stale deltas ---- */

#define SAMPLES_C 200

/* Three regions a, b, c; a round merges with quorum of them; deltas up to
 * max_staleness behind are taken, scaled by 1 / (1 + tau) (power 1). */
static void fx_three(fx *f, uint32_t quorum, uint64_t max_staleness)
{
    fx_config(f, 4, 3);
    f->cfg.regions = 3;
    f->cfg.n_members = 3;
    f->cfg.rounds = 10;
    f->cfg.quorum = quorum;
    f->cfg.max_staleness = max_staleness;
    f->cfg.staleness_power = 1;
    fx_start(f);
    join_both(f);
    join(f, "c", "rc", SAMPLES_C);
    forget(f);
}

Test(coord_sm, quorum_merges_without_the_slow_region_and_folds_its_late_delta_in_weighted)
{
    fx f;
    fx_three(&f, 2, 2);
    float *da = vec(f.n), *db = vec(f.n), *dc = vec(f.n), *want = vec(f.n), *v1 = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    make_delta(dc, f.n, 0.1f, 3);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, da);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "one delta of a quorum of two");
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "a and b make the quorum");
    const float *params;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    const float *d1[2] = {da, db};
    double w1[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(f.initial, d1, w1, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "version 1: a and b");
    cr_assert_eq(part(m, "c")->samples, 0, "c is not in version 1");
    memcpy(v1, params, f.n * sizeof(float));
    committed(&f);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rc"), 1, "c gets version 1 too");
    forget(&f);

    /* c's delta, made against version 0, arrives one version late: taken at
     * half weight; a's fresh one completes the next quorum. */
    send_delta(&f, "c", "rc", 1, 0, SAMPLES_C, dc);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 0);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    send_delta(&f, "a", "ra", 2, 1, SAMPLES_A, da);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    m = pending(&f, &params, NULL, NULL);
    float *half = vec(f.n);
    for (size_t i = 0; i < f.n; i++)
        half[i] = 0.5f * dc[i];
    const float *d2[2] = {da, half};
    double w2[2] = {SAMPLES_A, SAMPLES_C};
    fedavg_expect(v1, d2, w2, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "version 2: a, and c at 1/(1+1)");
    cr_assert_eq(part(m, "c")->samples, SAMPLES_C);
    cr_assert_eq(part(m, "b")->samples, 0);
    committed(&f);
    free(half);
    free(da);
    free(db);
    free(dc);
    free(want);
    free(v1);
    fx_fini(&f);
}

Test(coord_sm, a_delta_further_behind_than_max_staleness_is_refused_and_gets_global)
{
    fx f;
    fx_three(&f, 1, 1);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    for (uint64_t v = 0; v < 2; v++) { /* a alone makes versions 1 and 2 */
        send_delta(&f, "a", "ra", 1 + v, v, SAMPLES_A, d);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
        committed(&f);
        forget(&f);
    }
    send_delta(&f, "c", "rc", 1, 0, SAMPLES_C, d); /* two behind, one allowed */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 1);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    advance(&f, 100, 100);
    cr_expect_geq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rc"), 1, "GLOBAL again");
    forget(&f);
    send_delta(&f, "b", "rb", 1, 1, SAMPLES_B, d); /* one behind: taken */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 1);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    fx_fini(&f);
}

Test(coord_sm, async_commits_a_version_per_delta)
{
    fx f;
    fx_three(&f, 1, 4);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.05f, 4);
    const char *names[3] = {"a", "b", "c"}, *routes[3] = {"ra", "rb", "rc"};
    uint64_t samples[3] = {SAMPLES_A, SAMPLES_B, SAMPLES_C};
    for (uint64_t k = 0; k < 6; k++) {
        size_t r = k % 3;
        /* Each region's delta is against the version it last got: k - k % 3 ... behind. */
        uint64_t made_at = k >= 3 ? k - 2 : 0;
        send_delta(&f, names[r], routes[r], 10 + k, made_at, samples[r], d);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "delta %llu: no commit",
                     (unsigned long long)k);
        const float *params;
        const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
        cr_assert_eq(m->version, k + 1);
        cr_assert_eq(part(m, names[r])->samples, samples[r]);
        committed(&f);
        forget(&f);
    }
    cr_expect_eq(stats(&f).rejected[GDML_REASON_STALE], 0);
    cr_expect_eq(stats(&f).merges, 6);
    free(d);
    fx_fini(&f);
}

/* The same delta replayed after its commit: DUPLICATE, no second merge. */
Test(coord_sm, replayed_delta_after_commit_is_duplicate)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *v1 = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    size_t na = 0, nb = 0;
    gdml_blob **fa = delta_frames(&f, delta_header("a", 1, 0, SAMPLES_A), da, &na);
    gdml_blob **fb = delta_frames(&f, delta_header("b", 1, 0, SAMPLES_B), db, &nb);
    feed(&f, fa[0], "a", "ra");
    feed(&f, fb[0], "b", "rb");
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    pending(&f, &params, NULL, NULL);
    memcpy(v1, params, f.n * sizeof(float));
    forget(&f);
    committed(&f);
    forget(&f);
    uint64_t dup = stats(&f).rejected[GDML_REASON_DUPLICATE];
    feed(&f, fa[0], "a", "ra");
    feed(&f, fb[0], "b", "rb");
    /* And the same seq relabelled with the current version. */
    send_delta(&f, "a", "ra", 1, 1, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 1, 1, SAMPLES_B, db);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_DUPLICATE], dup + 4);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0);
    cr_expect_eq(stats(&f).merges, 1);
    cr_expect_eq(stats(&f).version, 1);
    /* The next honest round starts from version 1, unchanged. */
    send_delta(&f, "a", "ra", 2, 1, SAMPLES_A, da);
    send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *v2 = NULL;
    const gdml_version_meta *m = pending(&f, &v2, NULL, NULL);
    cr_expect_eq(m->parent, 1);
    float *want = vec(f.n);
    const float *ds[2] = {da, db};
    double ws[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(v1, ds, ws, 2, f.n, 1.0, want);
    expect_close(v2, want, f.n, "version 2 from version 1");
    test_frames_free(fa, na);
    test_frames_free(fb, nb);
    free(da);
    free(db);
    free(v1);
    free(want);
    fx_fini(&f);
}

/* ---- other frames ---- */

Test(coord_sm, error_from_a_region_is_advisory)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    gdml_msg_header h;
    gdml_msg_header_init(&h, GDML_MSG_ERROR, "a");
    h.seq = 2;
    h.code = GDML_REASON_TENSOR;
    snprintf(h.text, sizeof h.text, "GLOBAL chunk did not decode");
    for (int i = 0; i < 5; i++) {
        gdml_blob *frame = NULL;
        cr_assert_eq(gdml_frame_header_only(&h, &frame), GDML_OK);
        feed_own(&f, frame, "a", "ra");
    }
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NONE], 5, "counted");
    cr_expect_eq(f.acts.n, 0, "no reply, no STOP, no EXIT");
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_JOINED);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    fx_fini(&f);
}

Test(coord_sm, unexpected_types_refused)
{
    static const gdml_msg_type types[] = {GDML_MSG_PUSH,   GDML_MSG_MODEL, GDML_MSG_WELCOME,
                                          GDML_MSG_GLOBAL, GDML_MSG_STOP,  GDML_MSG_PULL};
    size_t nt = sizeof types / sizeof types[0];
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    for (size_t k = 0; k < nt; k++)
        feed_own(&f, test_control(types[k], "a", 2, 0, 0, 0), "a", "ra");
    cr_expect_eq(stats(&f).rejected[GDML_REASON_UNEXPECTED], nt);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_ERROR, "ra"), 1, "told once a second");
    const test_action *e = test_find_send(&f.acts, GDML_MSG_ERROR, "ra");
    cr_expect(e && e->h.code == GDML_REASON_UNEXPECTED);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 0, "a region's STOP stops nothing");
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, NULL), 0);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    fx_fini(&f);
}

/* Frames the transport refused: counted by reason, nothing else. */
Test(coord_sm, refused_frames_counted)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    static const struct {
        gdml_reason given, counted;
    } cases[] = {{GDML_REASON_MALFORMED, GDML_REASON_MALFORMED},
                 {GDML_REASON_VERSION, GDML_REASON_VERSION},
                 {GDML_REASON_MULTIPART, GDML_REASON_MULTIPART},
                 {(gdml_reason)999, GDML_REASON_MALFORMED}};
    uint64_t want[GDML_REASON_COUNT] = {0};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        gdml_rx rx;
        memset(&rx, 0, sizeof rx);
        rx.peer = test_route("rz");
        rx.reason = cases[k].given;
        gdml_coord_on_refused(f.c, f.now, &rx, "bad frame");
        want[cases[k].counted]++;
    }
    drain(&f);
    gdml_coord_stats s = stats(&f);
    for (int r = 0; r < GDML_REASON_COUNT; r++)
        cr_expect_eq(s.rejected[r], want[r], "reason %d", r);
    cr_expect_eq(f.acts.n, 0);
    fx_fini(&f);
}

/* ---- regions that go away ---- */

Test(coord_sm, dropped_route_not_waited_for)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    gdml_peer unknown = test_route("nobody");
    gdml_coord_on_dropped(f.c, f.now, &unknown);
    drain(&f);
    cr_expect_eq(f.acts.n, 0);
    gdml_peer ra = test_route("ra");
    gdml_coord_on_dropped(f.c, f.now, &ra);
    drain(&f);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_SLOW], 1);
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_LEFT);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "b's delta commits");
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, 0);
    forget(&f);
    committed(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 0);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 1);
    forget(&f);
    send_delta(&f, "a", "ra", 1, 1, SAMPLES_A, d); /* it left: join first */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 1);
    join(&f, "a", "ra2", SAMPLES_A);
    cr_expect_eq(stats(&f).rejoins, 1);
    const test_action *w = test_find_send(&f.acts, GDML_MSG_WELCOME, "ra2");
    cr_assert_not_null(w);
    cr_expect_eq(w->h.version, 1);
    free(d);
    fx_fini(&f);
}

Test(coord_sm, silent_region_not_waited_for_until_heard_again)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    advance(&f, 2000, 100);
    feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "b", 2, 0, 0, 0), "b", "rb");
    advance(&f, 900, 100); /* 2900 ms since a was heard */
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "a is still waited for");
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_JOINED);
    advance(&f, 200, 100); /* 3100 ms */
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_SILENT);
    cr_expect_eq(member_state(&f, "b"), GDML_MEMBER_JOINED);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "b's delta commits");
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    cr_expect_eq(part(m, "a")->samples, 0);
    forget(&f);
    committed(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 0,
                 "nothing goes to a silent region: its view stays what it holds");
    forget(&f);
    feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "a", 2, 0, 0, 0), "a", "ra");
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_JOINED, "heard from again");
    advance(&f, 100, 100);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 1, "heard again: it is sent it");
    send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "a is waited for again");
    send_delta(&f, "a", "ra", 2, 1, SAMPLES_A, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    free(d);
    fx_fini(&f);
}

/* A region back from a partition on a new connection, holding what it was last
 * sent: it gets what it lacks (GLOBAL through its downlink), not the whole
 * model; one holding something else gets WELCOME. */
Test(coord_sm, a_region_back_from_a_partition_gets_a_delta_not_the_model)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.rounds = 10;
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n), *got = vec(f.n), *v1 = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    const float *params;
    pending(&f, &params, NULL, NULL);
    memcpy(v1, params, f.n * sizeof(float));
    committed(&f); /* version 1 goes to both */
    forget(&f);
    /* b delivers round 2; a falls silent; round 2 goes on without it. */
    send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, d);
    for (int k = 0; k < 32; k++) {
        feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "b", 10 + k, 0, 0, 0), "b", "rb");
        advance(&f, 100, 100);
    }
    cr_assert_eq(member_state(&f, "a"), GDML_MEMBER_SILENT);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *v2;
    pending(&f, &v2, NULL, NULL);
    float *want = vec(f.n);
    for (size_t i = 0; i < f.n; i++)
        want[i] = v2[i] - v1[i];
    committed(&f);
    forget(&f);
    /* a reconnects (a new route) and says HELLO holding version 1. */
    gdml_blob *h = hello("a", SAMPLES_A, 0, 0);
    gdml_msg_header hh;
    const uint8_t *payload;
    size_t len;
    const uint8_t *view = gdml_blob_view(h, &len);
    cr_assert_eq(gdml_msg_decode(view, len, &hh, &payload, NULL, NULL), GDML_OK);
    gdml_blob_unref(&h);
    hh.version = 1;
    gdml_layout_format(&f.cfg.layout, hh.text, sizeof hh.text); /* it holds a model */
    gdml_blob *h1 = NULL;
    cr_assert_eq(gdml_frame_header_only(&hh, &h1), GDML_OK);
    feed_own(&f, h1, "a", "ra2");
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra2"), 0, "the whole model again");
    cr_assert_gt(decode_sent(&f, GDML_MSG_GLOBAL, "ra2", got), 0, "no GLOBAL");
    expect_close(got, want, f.n, "what it lacks: version 2 minus version 1");
    forget(&f);
    /* Holding a version its view does not match (it restarted, say): WELCOME. */
    hh.version = 0;
    hh.seq++;
    gdml_blob *h0 = NULL;
    cr_assert_eq(gdml_frame_header_only(&hh, &h0), GDML_OK);
    feed_own(&f, h0, "a", "ra3");
    cr_assert_gt(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra3"), 0);
    free(d);
    free(got);
    free(v1);
    free(want);
    fx_fini(&f);
}

/* A region that holds the newest version and says HELLO to declare more
 * samples (a worker joined it late) is not sent the whole model again; one
 * that holds no model (its HELLO names no layout) is. */
Test(coord_sm, a_hello_that_declares_more_samples_does_not_resend_the_model)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    gdml_msg_header hh;
    gdml_msg_header_init(&hh, GDML_MSG_HELLO, "a");
    hh.seq = 2;
    hh.count = SAMPLES_A * 2;
    gdml_layout_format(&f.cfg.layout, hh.text, sizeof hh.text);
    gdml_blob *more = NULL;
    cr_assert_eq(gdml_frame_header_only(&hh, &more), GDML_OK);
    feed_own(&f, more, "a", "ra");
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, NULL), 0, "the model was sent again");
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, NULL), 0);
    /* Its deltas may now weigh what it declared. */
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 3, 0, SAMPLES_A * 2, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_assert_eq(stats(&f).rejected[GDML_REASON_BOUNDS], 0);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    committed(&f);
    forget(&f);
    /* Restarted, it holds nothing: the whole model. */
    hh.seq = 1;
    hh.text[0] = '\0';
    gdml_blob *fresh = NULL;
    cr_assert_eq(gdml_frame_header_only(&hh, &fresh), GDML_OK);
    feed_own(&f, fresh, "a", "ra2");
    cr_assert_gt(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra2"), 0);
    free(d);
    fx_fini(&f);
}

/* Only a joins: the run times out naming how many joined. */
Test(coord_sm, timeout_while_regions_join)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join(&f, "a", "ra", SAMPLES_A);
    forget(&f);
    for (int i = 0; i < 99; i++) { /* a keeps talking; b never comes */
        advance(&f, 100, 100);
        if (i % 10 == 0)
            feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "a", 2, 0, 0, 0), "a", "ra");
    }
    cr_expect_null(find_exit(&f));
    forget(&f);
    advance(&f, 200, 100);
    const gdml_action *x = find_exit(&f);
    cr_assert_not_null(x);
    cr_expect_eq(x->status, 3);
    cr_expect_eq(x->err, GDML_ERR_TIMEOUT);
    cr_expect(strstr(x->text, "1 of 2"), "%s", x->text);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1);
    fx_fini(&f);
}

/* a's downlink cap has room for WELCOME only: a alone is stopped, b goes on to the end. */
Test(coord_sm, downlink_cap_spent_stops_that_region_alone)
{
    uint64_t cap = smallest_budget(false);
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    feed_own(&f, hello("a", SAMPLES_A, 0, cap), "a", "ra");
    join(&f, "b", "rb", SAMPLES_B);
    cr_assert_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    gdml_msg_header ha = delta_header("a", 1, 0, SAMPLES_A);
    ha.down_cap = cap;
    send_delta_h(&f, ha, "ra", d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    forget(&f);
    committed(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 0);
    cr_expect_leq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1, "STOP if the cap allows");
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "rb"), 1);
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_STOPPED);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 0);
    forget(&f);
    send_delta_h(&f, delta_header("a", 2, 1, SAMPLES_A), "ra", d);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 1, "a stopped region stays out");
    for (uint64_t v = 1; v < 3; v++) {
        forget(&f);
        send_delta(&f, "b", "rb", v + 1, v, SAMPLES_B, d);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "version %llu",
                     (unsigned long long)v + 1);
        const float *params = NULL;
        const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
        cr_expect_eq(part(m, "a")->samples, 0);
        forget(&f);
        committed(&f);
        advance(&f, 1000, 100);
    }
    const gdml_action *x = find_exit(&f);
    cr_assert_not_null(x);
    cr_expect_eq(x->status, 0);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "rb"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 0);
    const char *name = NULL;
    uint64_t up = 0, down = 0;
    gdml_coord_region_bytes(f.c, 0, &name, &up, &down);
    cr_expect_str_eq(name, "a");
    cr_expect_leq(down, cap, "a's downlink spent %llu of its cap %llu", (unsigned long long)down,
                  (unsigned long long)cap);
    free(d);
    fx_fini(&f);
}

/* ---- the end of the run ---- */

Test(coord_sm, commit_failure_ends_the_run)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    forget(&f);
    gdml_coord_on_committed(f.c, f.now, GDML_ERR_NOSPACE, "the disk is full");
    drain(&f);
    const gdml_action *x = find_exit(&f);
    cr_assert_not_null(x);
    cr_expect_eq(x->status, 1);
    cr_expect_eq(x->err, GDML_ERR_NOSPACE);
    cr_expect(strstr(x->text, "the disk is full"), "%s", x->text);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_EXIT), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "rb"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, NULL), 0);
    cr_expect_eq(stats(&f).version, 0);
    cr_expect_eq(stats(&f).merges, 0);
    forget(&f);
    gdml_coord_on_committed(f.c, f.now, GDML_OK, NULL); /* late: ignored */
    advance(&f, 6000, 500);
    cr_expect_eq(f.acts.n, 0);
    free(d);
    fx_fini(&f);
}

Test(coord_sm, stop_tells_every_region_and_exits_130)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    gdml_coord_on_stop(f.c, f.now, "signal");
    drain(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, "rb"), 1);
    const gdml_action *x = find_exit(&f);
    cr_assert_not_null(x);
    cr_expect_eq(x->status, 130);
    cr_expect_eq(x->err, GDML_ERR_INTERRUPTED);
    forget(&f);
    gdml_coord_on_stop(f.c, f.now, "signal");
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    advance(&f, 6000, 500);
    cr_expect_eq(f.acts.n, 0, "nothing after the end");
    free(d);
    fx_fini(&f);
}

Test(coord_sm, stop_while_committing)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "a", "ra", 1, 0, SAMPLES_A, d);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    forget(&f);
    gdml_coord_on_stop(f.c, f.now, "signal");
    drain(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_STOP, NULL), 2);
    cr_assert_not_null(find_exit(&f));
    cr_expect_eq(find_exit(&f)->status, 130);
    forget(&f);
    committed(&f);
    cr_expect_eq(f.acts.n, 0, "no GLOBAL after STOP");
    free(d);
    fx_fini(&f);
}

/* ---- resume ---- */

typedef struct snapshot {
    gdml_version_meta meta;
    float *params, *state;
    size_t n, n_state;
} snapshot;

static void snap(fx *f, snapshot *s)
{
    const float *params = NULL, *state = NULL;
    s->meta = *pending(f, &params, &state, &s->n_state);
    s->n = f->n;
    s->params = vec(f->n);
    memcpy(s->params, params, f->n * sizeof(float));
    s->state = vec(s->n_state);
    if (s->n_state)
        memcpy(s->state, state, s->n_state * sizeof(float));
}

static void snap_free(snapshot *s)
{
    free(s->params);
    free(s->state);
}

static void round_deltas(fx *f, uint64_t r, float *da, float *db)
{
    make_delta(da, f->n, 0.1f, (unsigned)r);
    make_delta(db, f->n, 0.07f, (unsigned)r + 20);
    send_delta(f, "a", "ra", r, r - 1, SAMPLES_A, da);
    send_delta(f, "b", "rb", r, r - 1, SAMPLES_B, db);
    cr_assert_eq(test_count_kind(&f->acts, GDML_ACT_COMMIT), 1, "round %llu",
                 (unsigned long long)r);
}

Test(coord_sm, resume_adam_is_bit_identical)
{
    fx u;
    fx_config(&u, 4, 3);
    u.cfg.merge.rule = "adam";
    u.cfg.merge.lr = 0.1;
    fx_start(&u);
    join_both(&u);
    forget(&u);
    float *da = vec(u.n), *db = vec(u.n);
    snapshot v2, v3u, v3r;
    round_deltas(&u, 1, da, db);
    forget(&u);
    committed(&u);
    forget(&u);
    round_deltas(&u, 2, da, db);
    snap(&u, &v2);
    cr_assert_eq(v2.n_state, 2 * u.n, "adam stores its two moments");
    cr_expect_str_eq(v2.meta.rule, "adam");
    forget(&u);
    committed(&u);
    forget(&u);
    round_deltas(&u, 3, da, db);
    snap(&u, &v3u);

    fx r;
    fx_config(&r, 4, 3);
    r.cfg.merge.rule = "adam";
    r.cfg.merge.lr = 0.1;
    fx_start(&r);
    gdml_errmsg e = {{0}};
    cr_assert_eq(gdml_coord_resume(r.c, &v2.meta, v2.meta.version, v2.params, v2.n, v2.state,
                                   v2.n_state, &e),
                 GDML_OK, "%s", e.text);
    gdml_coord_start(r.c, r.now);
    drain(&r);
    cr_expect_eq(stats(&r).version, 2);
    join_both(&r);
    cr_assert_eq(test_count_sends(&r.acts, GDML_MSG_WELCOME, "ra"), 1);
    const test_action *w = test_find_send(&r.acts, GDML_MSG_WELCOME, "ra");
    cr_expect_eq(w->h.version, 2);
    cr_expect_eq(w->h.acked, 2, "WELCOME tells a which of its deltas were merged");
    float *got = vec(r.n);
    decode_sent(&r, GDML_MSG_WELCOME, "ra", got);
    for (size_t j = 0; j < r.n; j++)
        got[j] += r.initial[j];
    expect_close(got, v2.params, r.n, "initial + WELCOME = version 2");
    forget(&r);
    /* A replay of round 2 is known to be merged. */
    send_delta(&r, "a", "ra", 2, 2, SAMPLES_A, da);
    cr_expect_eq(stats(&r).rejected[GDML_REASON_DUPLICATE], 1);
    round_deltas(&r, 3, da, db);
    snap(&r, &v3r);

    cr_expect_eq(v3r.meta.version, 3);
    cr_expect_eq(v3r.meta.parent, 2);
    cr_expect_eq(v3r.meta.round, 3);
    cr_expect_eq(v3r.meta.version, v3u.meta.version);
    cr_expect_eq(v3r.meta.n_regions, v3u.meta.n_regions);
    cr_assert_eq(v3r.n_state, v3u.n_state);
    cr_expect_eq(memcmp(v3r.params, v3u.params, r.n * sizeof(float)), 0, "params bit-identical");
    cr_expect_eq(memcmp(v3r.state, v3u.state, v3r.n_state * sizeof(float)), 0,
                 "merge_state bit-identical");
    forget(&r);
    committed(&r);
    cr_assert_not_null(find_exit(&r));
    cr_expect_eq(find_exit(&r)->status, 0, "round 3 of 3: the end");
    snap_free(&v2);
    snap_free(&v3u);
    snap_free(&v3r);
    free(da);
    free(db);
    free(got);
    fx_fini(&u);
    fx_fini(&r);
}

Test(coord_sm, resume_refuses_what_it_cannot_continue)
{
    /* A version of the adam run, and one of a fedavg run. */
    fx a;
    fx_config(&a, 4, 3);
    a.cfg.merge.rule = "adam";
    fx_start(&a);
    join_both(&a);
    forget(&a);
    float *da = vec(a.n), *db = vec(a.n);
    snapshot adam, fed;
    round_deltas(&a, 1, da, db);
    snap(&a, &adam);
    fx g;
    fx_config(&g, 4, 3);
    fx_start(&g);
    join_both(&g);
    forget(&g);
    round_deltas(&g, 1, da, db);
    snap(&g, &fed);
    cr_assert_eq(fed.n_state, 0);

    gdml_errmsg e = {{0}};
    /* fedavg coordinator, adam version. */
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    cr_expect_eq(
        gdml_coord_resume(f.c, &adam.meta, 1, adam.params, adam.n, adam.state, adam.n_state, &e),
        GDML_ERR_INVALID);
    cr_expect(strstr(e.text, "adam"), "%s", e.text);
    cr_expect_eq(gdml_coord_resume(f.c, &adam.meta, 1, adam.params, adam.n, NULL, 0, &e),
                 GDML_ERR_INVALID, "the rule's name decides, not just the state's size");
    /* adam coordinator, fedavg version. */
    fx h;
    fx_config(&h, 4, 3);
    h.cfg.merge.rule = "adam";
    fx_start(&h);
    cr_expect_eq(gdml_coord_resume(h.c, &fed.meta, 1, fed.params, fed.n, NULL, 0, &e),
                 GDML_ERR_INVALID);
    /* Parameters that are not finite, or of another size. */
    float bad[15];
    memcpy(bad, fed.params, sizeof bad);
    bad[7] = NAN;
    cr_expect_eq(gdml_coord_resume(f.c, &fed.meta, 1, bad, 15, NULL, 0, &e), GDML_ERR_INVALID);
    bad[7] = INFINITY;
    cr_expect_eq(gdml_coord_resume(f.c, &fed.meta, 1, bad, 15, NULL, 0, &e), GDML_ERR_INVALID);
    bad[7] = -INFINITY;
    cr_expect_eq(gdml_coord_resume(f.c, &fed.meta, 1, bad, 15, NULL, 0, &e), GDML_ERR_INVALID);
    cr_expect_eq(gdml_coord_resume(f.c, &fed.meta, 1, fed.params, 14, NULL, 0, &e),
                 GDML_ERR_INVALID);
    /* Refusals change nothing: f still starts at version 0. */
    cr_expect_eq(stats(&f).version, 0);
    join_both(&f);
    const test_action *w = test_find_send(&f.acts, GDML_MSG_WELCOME, "ra");
    cr_assert_not_null(w);
    cr_expect_eq(w->h.version, 0);
    /* And the right one is taken. */
    fx k;
    fx_config(&k, 4, 3);
    fx_start(&k);
    cr_expect_eq(gdml_coord_resume(k.c, &fed.meta, 1, fed.params, fed.n, NULL, 0, &e), GDML_OK,
                 "%s", e.text);
    snap_free(&adam);
    snap_free(&fed);
    free(da);
    free(db);
    fx_fini(&a);
    fx_fini(&g);
    fx_fini(&f);
    fx_fini(&h);
    fx_fini(&k);
}

/* ---- ERROR replies are rate-limited ---- */

/* 1000 bad frames from one route in one second (spread_ms apart, or all in one
 * millisecond as one turn of the loop takes them): a few ERRORs at most. */
static void flood_one_route(int64_t start, int64_t spread_ms)
{
    fx f;
    fx_config(&f, 4, 3);
    f.now = start;
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    for (int i = 0; i < 1000; i++) {
        f.now = start + i * spread_ms; /* all within one second */
        switch (i % 3) {
        case 0:
            join(&f, "intruder", "rx", SAMPLES_A); /* NOT_ALLOWED */
            break;
        case 1:
            feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "intruder", 1, 0, 0, 0), "intruder",
                     "rx"); /* NOT_MEMBER */
            break;
        default:
            send_delta(&f, "intruder", "rx", (uint64_t)i, 0, SAMPLES_A, d); /* NOT_MEMBER */
            break;
        }
        /* and a member that sends junk */
        feed_own(&f, test_control(GDML_MSG_PUSH, "a", (uint64_t)i + 2, 0, 0, 0), "a", "ra");
    }
    gdml_coord_stats s = stats(&f);
    cr_expect_eq(s.rejected[GDML_REASON_NOT_ALLOWED] + s.rejected[GDML_REASON_NOT_MEMBER], 1000);
    cr_expect_eq(s.rejected[GDML_REASON_UNEXPECTED], 1000);
    size_t to_rx = test_count_sends(&f.acts, GDML_MSG_ERROR, "rx");
    size_t to_ra = test_count_sends(&f.acts, GDML_MSG_ERROR, "ra");
    cr_expect_leq(to_rx, 3, "%zu ERRORs to the intruder's route", to_rx);
    cr_expect_geq(to_rx, 1);
    cr_expect_leq(to_ra, 2, "%zu ERRORs to a", to_ra);
    cr_expect_geq(to_ra, 1);
    /* A second later it is told again. */
    forget(&f);
    f.now = start + 2000;
    join(&f, "intruder", "rx", SAMPLES_A);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_ERROR, "rx"), 1);
    free(d);
    fx_fini(&f);
}

Test(coord_sm, error_replies_rate_limited)
{
    flood_one_route(T0, 1);
}

Test(coord_sm, error_replies_rate_limited_in_one_burst)
{
    flood_one_route(T0, 0);
}

/* The same with the clock at 0, as a test or a freshly booted host may have it. */
Test(coord_sm, error_replies_rate_limited_at_time_zero)
{
    flood_one_route(0, 1);
}

Test(coord_sm, error_replies_rate_limited_in_one_burst_at_time_zero)
{
    flood_one_route(0, 0);
}

/* Bad frames from 1000 routes in one second: at most one table's worth of ERRORs. */
Test(coord_sm, error_replies_rate_limited_across_routes)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    for (int i = 0; i < 1000; i++) {
        char route[16];
        snprintf(route, sizeof route, "r%d", i);
        f.now = T0 + i;
        feed_own(&f, test_control(GDML_MSG_HEARTBEAT, "intruder", 1, 0, 0, 0), "intruder", route);
    }
    size_t n = test_count_sends(&f.acts, GDML_MSG_ERROR, NULL);
    cr_expect_leq(n, COORD_TOLD, "%zu ERRORs", n);
    cr_expect_geq(n, 1);
    cr_expect_eq(stats(&f).rejected[GDML_REASON_NOT_MEMBER], 1000);
    fx_fini(&f);
}

/* LEAVE: the region is not waited for; it may join again. */
Test(coord_sm, leave_not_waited_for)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *d = vec(f.n);
    make_delta(d, f.n, 0.1f, 1);
    send_delta(&f, "b", "rb", 1, 0, SAMPLES_B, d);
    feed_own(&f, test_control(GDML_MSG_LEAVE, "a", 2, 0, 0, 0), "a", "ra");
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_LEFT);
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    forget(&f);
    committed(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_GLOBAL, "ra"), 0);
    forget(&f);
    join(&f, "a", "ra", SAMPLES_A);
    cr_expect_eq(member_state(&f, "a"), GDML_MEMBER_JOINED);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    send_delta(&f, "b", "rb", 2, 1, SAMPLES_B, d);
    cr_expect_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 0, "a is waited for again");
    free(d);
    fx_fini(&f);
}

/* No member list: a HELLO refused for its budget has not joined and must not keep a slot. */
Test(coord_sm, hello_refused_for_its_budget_takes_no_slot)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.members = NULL;
    f.cfg.n_members = 0;
    fx_start(&f);
    feed_own(&f, hello("x", SAMPLES_A, 0, 1), "x", "rx"); /* 1 byte in all: nothing fits */
    cr_expect_eq(stats(&f).rejected[GDML_REASON_BUDGET], 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, NULL), 0);
    cr_expect_eq(gdml_coord_region_count(f.c), 0, "the refused name holds a slot");
    forget(&f);
    join_both(&f);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 1);
    cr_expect_eq(test_count_sends(&f.acts, GDML_MSG_WELCOME, "rb"), 1);
    cr_expect_eq(stats(&f).joins, 2);
    fx_fini(&f);
}

/* ---- held-out scores: metrics only ---- */

Test(coord_sm, a_version_records_the_scores_of_its_deltas_and_ignores_one_out_of_bounds)
{
    fx f;
    fx_config(&f, 4, 3);
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n), *want = vec(f.n);
    make_delta(da, f.n, 0.1f, 1);
    make_delta(db, f.n, 0.1f, 2);
    /* a's score is sane; b claims more held-out rows than its 300 samples. */
    gdml_msg_header ha = delta_header("a", 5, 0, SAMPLES_A);
    ha.val = (gdml_score){.rows = 40, .correct = 30, .loss = 0.75};
    gdml_msg_header hb = delta_header("b", 1, 0, SAMPLES_B);
    hb.val = (gdml_score){.rows = SAMPLES_B + 1, .correct = SAMPLES_B, .loss = 0.01};
    send_delta_h(&f, ha, "ra", da);
    send_delta_h(&f, hb, "rb", db);
    cr_assert_eq(stats(&f).rejected[GDML_REASON_BOUNDS], 1);
    cr_assert_eq(stats(&f).contributions_dropped, 0, "a bad metric dropped a delta");
    cr_assert_null(test_find_send(&f.acts, GDML_MSG_ERROR, "rb"), "a bad metric is not argued");
    cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1);
    const float *params = NULL;
    const gdml_version_meta *m = pending(&f, &params, NULL, NULL);
    /* Both deltas are merged as without scores. */
    const float *ds[2] = {da, db};
    double ws[2] = {SAMPLES_A, SAMPLES_B};
    fedavg_expect(f.initial, ds, ws, 2, f.n, 1.0, want);
    expect_close(params, want, f.n, "both deltas");
    const gdml_region_part *pa = part(m, "a"), *pb = part(m, "b");
    cr_assert_eq(pa->val.rows, 40);
    cr_assert_eq(pa->val.correct, 30);
    cr_assert_eq(pa->val.loss, 0.75);
    cr_assert_eq(pa->val_version, 0);
    cr_assert_eq(pb->val.rows, 0, "b's score out of bounds landed in the metadata");
    gdml_score total;
    cr_assert_eq(gdml_store_meta_score(m, &total), 1);
    committed(&f);
    free(da);
    free(db);
    free(want);
    fx_fini(&f);
}

/*
 * A region that rejoins gets the model whole, and error feedback pays the
 * jump off over the GLOBALs after: those of the next 5 versions carry no
 * lr * H, so that SCAFFOLD's derived variates keep no bias (coord_down.c).
 */
Test(coord_sm, globals_after_a_rejoin_carry_no_lr_steps_for_five_versions)
{
    fx f;
    fx_config(&f, 4, 3);
    f.cfg.rounds = 12;
    fx_start(&f);
    join_both(&f);
    forget(&f);
    float *da = vec(f.n), *db = vec(f.n);
    const uint64_t rejoin_at = 2, quiet = 5;
    for (uint64_t r = 1; r <= 10; r++) {
        if (r == rejoin_at + 1) { /* a restarted: HELLO again, a WELCOME of version 2 */
            join(&f, "a", "ra", SAMPLES_A);
            cr_assert_gt(test_count_sends(&f.acts, GDML_MSG_WELCOME, "ra"), 0, "no WELCOME");
            forget(&f);
        }
        make_delta(da, f.n, 0.1f, (unsigned)r);
        make_delta(db, f.n, 0.05f, (unsigned)(r + 10));
        gdml_msg_header ha = delta_header("a", r, r - 1, SAMPLES_A);
        gdml_msg_header hb = delta_header("b", r, r - 1, SAMPLES_B);
        ha.lr_steps = hb.lr_steps = 0.5;
        send_delta_h(&f, ha, "ra", da);
        send_delta_h(&f, hb, "rb", db);
        cr_assert_eq(test_count_kind(&f.acts, GDML_ACT_COMMIT), 1, "round %llu",
                     (unsigned long long)r);
        forget(&f);
        committed(&f);
        for (int k = 0; k < 2; k++) {
            const test_action *g = test_find_send(&f.acts, GDML_MSG_GLOBAL, k ? "rb" : "ra");
            cr_assert_not_null(g, "no GLOBAL of version %llu", (unsigned long long)r);
            if (r > rejoin_at && r <= rejoin_at + quiet)
                cr_expect_eq(g->h.lr_steps, 0, "GLOBAL %llu carries lrh %g after the rejoin",
                             (unsigned long long)r, g->h.lr_steps);
            else
                cr_expect_float_eq(g->h.lr_steps, 0.5, 1e-12, "GLOBAL %llu: lrh %g",
                                   (unsigned long long)r, g->h.lr_steps);
        }
        forget(&f);
    }
    free(da);
    free(db);
    fx_fini(&f);
}
